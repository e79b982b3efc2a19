"""Small openpyxl helpers: text cells, and formulas with cached values (openpyxl cannot write those)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile


def inject_formulas(path: str, sheet_index: int, formulas: dict[str, str]) -> None:
    """Turns numeric cells into formula cells that keep their value as the cached result.

    ``formulas`` maps a cell reference ('G15') to a formula without '=' ('SUM(F15-D15)+1'). Readers that use
    cached values (pandas, openpyxl ``data_only=True``) see the number; plain openpyxl sees '=SUM(...)',
    exactly as with the real SAMM file.
    """
    member = f"xl/worksheets/sheet{sheet_index + 1}.xml"
    with zipfile.ZipFile(path) as zin:
        xml = zin.read(member).decode("utf-8")
        entries = [(info, zin.read(info.filename)) for info in zin.infolist()]

    def repl(match: re.Match) -> str:
        ref, value = match.group(1), match.group(3)
        formula = formulas.get(ref)
        if formula is None:
            return match.group(0)
        return f'<c r="{ref}"{match.group(2)}><f>{formula}</f><v>{value}</v></c>'

    xml, n = re.subn(r'<c r="([A-Z]+[0-9]+)"((?: s="[0-9]+")?)(?: t="n")?><v>([^<]*)</v></c>', repl, xml)
    fd, tmp = tempfile.mkstemp(suffix=".xlsx", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, data in entries:
            zout.writestr(info, xml.encode("utf-8") if info.filename == member else data)
    shutil.move(tmp, path)
