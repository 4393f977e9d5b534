"""The operators' commands behind `auzap-actors` (cli.py): instance migration, export, import.
Like the launcher and the command line, they see every layer."""
