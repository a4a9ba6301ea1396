"""`python -m outbound_operator`: same as the `outbound-operator` command."""

import sys

from outbound_operator.cli import main

sys.exit(main())
