"""What a person reads about runs: ``sphere-report``'s tables, figures and one HTML page from run
directories (collect → aggregate → tables/, figures/, paired comparisons → html; ``build`` runs them
all), and the figures of one run drawn at its end (``figures.run_curves``)."""
