"""Protocol lint: traffic checked against the MCP specification of the negotiated version.

`rules.RULES` is the table (stable id, spec section, versions, summary); `lint.SpecLint` is
the pure core that applies it to observations; `schema` validates params and results with
the official `mcp-types` wire models and is handed to the lint by the shells (check, live).
"""
