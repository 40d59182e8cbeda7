#!/usr/bin/env python
"""Django's command-line utility for Conduit."""

import sys


def main() -> None:
    from conduit.startup import configured_settings

    configured_settings()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
