"""Build and install scripts used by the Makefile; tools/images.py is also imported by tests."""
