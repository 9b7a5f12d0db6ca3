"""The ground floor: what every part of melkit uses and that imports nothing of melkit above it: errors and
exit codes (``errors``), crash-safe files (``files``), progress bars (``progress``), TensorFlow's import and
logs (``tf``, ``native_logs``), options declared once (``options``), number and table text (``fmt``),
spreadsheet-safe CSV (``spreadsheet``)."""
