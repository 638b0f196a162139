"""``python -m hmtools`` runs the CLI (also what ``torchrun -m hmtools`` launches)."""

from hmtools.cli import main

if __name__ == "__main__":
    main()
