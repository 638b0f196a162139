"""annotator_app package."""
