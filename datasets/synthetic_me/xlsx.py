"""Small openpyxl helpers: text cells, and formulas with cached values (openpyxl cannot write those)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile


_FIXED_DATE = (2019, 7, 1, 0, 0, 0)
_FIXED_W3C = "2019-07-01T00:00:00Z"


def finalize_xlsx(path: str, formulas: dict[int, dict[str, str]] | None = None) -> None:
    """Rewrites a saved workbook so that it is byte-deterministic, optionally adding formula cells.

    The zip entry times and the created/modified document properties are fixed. ``formulas`` maps a sheet
    index to {cell reference ('G15'): formula without '=' ('SUM(F15-D15)+1')}: those numeric cells become
    formula cells that keep their value as the cached result, so readers that use cached values (pandas,
    openpyxl ``data_only=True``) see the number and plain openpyxl sees '=SUM(...)', as with the real SAMM file.
    """
    formulas = formulas or {}
    members = {f"xl/worksheets/sheet{i + 1}.xml": cells for i, cells in formulas.items()}
    with zipfile.ZipFile(path) as zin:
        entries = [(info.filename, zin.read(info.filename)) for info in zin.infolist()]
    fd, tmp = tempfile.mkstemp(suffix=".xlsx", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries:
            if name in members:
                data = _add_formulas(data.decode("utf-8"), members[name]).encode("utf-8")
            elif name == "docProps/core.xml":
                data = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", _FIXED_W3C, data.decode("utf-8")).encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data)
    shutil.move(tmp, path)


def _add_formulas(xml: str, formulas: dict[str, str]) -> str:
    def repl(match: re.Match) -> str:
        ref, value = match.group(1), match.group(3)
        formula = formulas.get(ref)
        if formula is None:
            return match.group(0)
        return f'<c r="{ref}"{match.group(2)}><f>{formula}</f><v>{value}</v></c>'

    return re.sub(r'<c r="([A-Z]+[0-9]+)"((?: s="[0-9]+")?)(?: t="n")?><v>([^<]*)</v></c>', repl, xml)
