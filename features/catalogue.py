"""Write the feature catalogue page: ``python -m features.catalogue [PATH]``.

The page is generated from the feature definitions with the default settings; a test fails
when the committed page and the code disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data.config import ContractSettings
from data.storage import write_text_atomic
from features.base import FeatureSettings
from features.build import catalogue_markdown, feature_definitions

DEFAULT_PATH = Path(__file__).with_name("CATALOGUE.md")


def default_catalogue() -> str:
    return catalogue_markdown(feature_definitions(FeatureSettings(), ContractSettings().timezone))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    write_text_atomic(default_catalogue(), path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
