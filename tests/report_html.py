"""Checks of a run's HTML report shared by the report and export tests."""

import base64
import io
import re

from PIL import Image


def check_images_and_html(report_dir, expected) -> str:
    """Asserts every `expected` picture is written, readable, linked and embedded; returns the HTML."""
    html = (report_dir / "index.html").read_text()
    for name in expected:
        with Image.open(report_dir / name) as image:
            image.load()
            assert image.size[0] > 100 and image.size[1] > 100
        assert f'href="{name}"' in html and f'alt="{name}"' in html
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(expected)
    for data in embedded:
        Image.open(io.BytesIO(base64.b64decode(data))).load()
    return html
