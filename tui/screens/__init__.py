"""Screens of the ssetap browser, one per module."""
