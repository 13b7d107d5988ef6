"""The adaptation protocol: source detector -> synthesized target defects -> fine-tune -> evaluate.

`protocol.run_protocol(config, workdir)` runs it stage by stage (resumable), `evaluation` scores
a detector on a labelled source, and `table` renders the per-class F-measure tables.
`multi_run` runs it over target fabrics x seeds and `aggregate` turns those runs into intervals
and paired differences (`fabgen adapt-aggregate`).
"""
