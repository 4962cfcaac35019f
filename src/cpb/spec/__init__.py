"""Reading cpb.yaml: YAML with positions, the schema, the frozen model, modules."""
