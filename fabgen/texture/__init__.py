"""Texture feature networks trained by fabgen: the stage-1 condition without downloaded weights."""
