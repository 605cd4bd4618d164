"""Which files the wheel holds: the one part of the packaging that pyproject.toml cannot say.

The repository's top-level ``configs/`` and the small bundled ``data/`` (docs, presets and tests
name those paths) are mapped into the package as ``sphere/_configs`` and ``sphere/_data``, so an
installed wheel runs from any directory; ``sphere/paths.py`` finds them in a checkout and in a
wheel alike. Downloaded data (``data/full``, ``data/stats``) is never packaged.
"""

from setuptools import find_packages, setup

MAPPED = {"sphere._configs": "configs", "sphere._data": "data"}

setup(
    packages=find_packages(include=["sphere", "sphere.*", "editors", "editors.*"]) + list(MAPPED),
    package_dir=MAPPED,
    package_data={
        "sphere": ["models/arch/*.json"],
        "sphere._configs": ["*.yaml", "**/*.yaml"],
        "sphere._data": [
            "*.json.gz",
            "SAMPLES.md",
            "corpus/*.jsonl.gz",
            "general_ability/*.gz",
            "general_ability/alphaedit/*.json.gz",
            "tokenizers/*/*",
        ],
    },
    exclude_package_data={"sphere._configs": ["editor/_test_*.yaml"]},
)
