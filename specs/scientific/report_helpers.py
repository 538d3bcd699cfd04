"""A support module shipped next to the `report` launch package."""


def summary_rows(values):  # type: ignore[no-untyped-def]
    return [("count", len(values)), ("sum", int(values.sum())), ("max", int(values.max()))]
