"""``python -m ccnet.cli`` (what ``torchrun -m ccnet.cli`` runs)."""

from ccnet.cli import main

raise SystemExit(main())
