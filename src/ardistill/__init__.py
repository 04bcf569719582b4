"""ardistill: Distilled Decoding (DD) for pretrained image autoregressive models.

Rooms (see docs/architecture.md): networks (`teachers`, `student`), math (`flow`, `metrics`)
and workflows (`pairs`, `training`, `sampling`, `bench`, `zoo`). Data flows one way:
teacher + flow map -> pairs -> training -> student -> sampling -> metrics and reports.
"""

__version__ = "0.1.0"
