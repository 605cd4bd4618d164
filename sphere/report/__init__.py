"""What a person reads after a run: the summary table and the plots of metrics and HE against edits."""
