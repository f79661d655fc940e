"""`vipo-build audit`: balance of the committed shards against the shard plan, with reports.

The command is `vipo_build.audit.command.audit`; the audit.json document is
`vipo_build.audit.model.AuditReport`. Nothing is imported here, so reading the model (for the
JSON Schema) does not pull in matplotlib or the pipeline.
"""
