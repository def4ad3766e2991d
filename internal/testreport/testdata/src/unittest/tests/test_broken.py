import does_not_exist  # noqa: F401  (an import error: unittest reports it as an ERROR)
