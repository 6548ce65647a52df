"""One thin module per `edtalk` subcommand: parse, call, report."""
