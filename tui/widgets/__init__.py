"""Widgets of the ssetap browser, one per module; each nests the messages it posts."""
