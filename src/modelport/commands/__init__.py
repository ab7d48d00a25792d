"""One module per `modelport` subcommand; each defines add_parser(subparsers)."""
