"""The paper's contribution: SPHERE's principal directions and projection, and hyperspherical energy."""
