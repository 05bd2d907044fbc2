"""The subcommands of `ssetap` that live in the recorder: one module each, owning its parser.

Each module exposes `register(subparsers)`, which adds its parser and sets `func` to its runner.
Modules here import only what building the parser needs; the work loads when the command runs.
"""
