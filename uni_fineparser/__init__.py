"""uni_fineparser package."""
