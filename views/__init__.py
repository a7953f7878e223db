"""Blueprints, one per concern; what they share for answering requests is in web.py."""
