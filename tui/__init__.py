"""The ssetap browser: a Textual app over a capture. Nothing outside tui/ imports it."""
