"""The Outlook add-in manifest: generator, committed manifest.xml, icons, offline checks.

No network and no Office tooling: the manifest is parsed with ElementTree and held
to the element order of Microsoft's XSDs (see the sequences below and the pages
cited at the top of backend/calsync/manifest_template.xml).
"""

from __future__ import annotations

import importlib.util
import re
import struct
import uuid
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from calsync import manifest as manifest_mod
from calsync.manifest import main_manifest, render_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[2]
ADDIN = ROOT / "addin"
BASE = "https://localhost:3000"

OFFICE = "http://schemas.microsoft.com/office/appforoffice/1.1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
BT = "http://schemas.microsoft.com/office/officeappbasictypes/1.0"
VO10 = "http://schemas.microsoft.com/office/mailappversionoverrides"
VO11 = "http://schemas.microsoft.com/office/mailappversionoverrides/1.1"
XSI_TYPE = f"{{{XSI}}}type"

# XSD sequences (OfficeAppManifestV1_1.xsd: OfficeApp extended by MailApp;
# MailAppVersionOverridesV1_0/1_1.xsd; OfficeAppBasicTypesV1_0.xsd). Children must
# appear in this order; the optional ones may be missing. (tag, required)
OFFICEAPP_SEQUENCE = [
    ("Id", True),
    ("AlternateId", False),
    ("Version", True),
    ("ProviderName", True),
    ("DefaultLocale", True),
    ("DisplayName", True),
    ("Description", True),
    ("IconUrl", False),
    ("HighResolutionIconUrl", False),
    ("SupportUrl", False),
    ("AppDomains", False),
    ("Hosts", False),
    # MailApp extension
    ("Requirements", True),
    ("FormSettings", True),
    ("Permissions", False),
    ("Rule", True),
    ("DisableEntityHighlighting", False),
    ("VersionOverrides", False),
]
VO10_SEQUENCE = [
    ("Description", False),
    ("Requirements", False),
    ("Hosts", False),
    ("Resources", False),
    ("VersionOverrides", False),
]
VO11_SEQUENCE = [
    ("Description", False),
    ("Requirements", False),
    ("Hosts", False),
    ("Resources", False),
    ("WebApplicationInfo", False),
    ("EquivalentAddins", False),
    ("ConnectedServiceControls", False),
    ("ExtendedPermissions", False),
]
RESOURCES_SEQUENCE = [
    ("Images", False),
    ("Urls", False),
    ("ShortStrings", False),
    ("LongStrings", False),
]
FORM_FACTOR_SEQUENCE = [("FunctionFile", False), ("ExtensionPoint", True)]
GROUP_SEQUENCE = [("Label", True), ("Control", True)]
BUTTON_SEQUENCE = [("Label", True), ("Supertip", True), ("Icon", True), ("Action", True)]
SUPERTIP_SEQUENCE = [("Title", True), ("Description", True)]
SHOW_TASKPANE_SEQUENCE = [
    ("SourceLocation", True),
    ("SupportsPinning", False),
    ("SupportsNoItemContext", False),
    ("SupportsMultiSelect", False),
]
WEB_APP_INFO_SEQUENCE = [("Id", True), ("Resource", True), ("Scopes", True)]
MAIL_DESKTOP_SETTINGS_SEQUENCE = [("SourceLocation", True), ("RequestedHeight", False)]

EXTENSION_POINTS = (
    "MessageReadCommandSurface",
    "AppointmentOrganizerCommandSurface",
    "AppointmentAttendeeCommandSurface",
)


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def assert_follows_sequence(element: ET.Element, sequence: list[tuple[str, bool]]) -> None:
    """Every child is in the XSD sequence, children appear in its order (repeats allowed
    next to each other), and every required child is present."""
    order = {name: i for i, (name, _required) in enumerate(sequence)}
    names = [local(child.tag) for child in element]
    where = local(element.tag)
    unknown = [n for n in names if n not in order]
    assert not unknown, f"<{where}> has children the XSD does not allow: {unknown}"
    positions = [order[n] for n in names]
    assert positions == sorted(positions), (
        f"<{where}> children are out of XSD order: {names}; expected order "
        f"{[n for n, _ in sequence]}"
    )
    missing = [n for n, required in sequence if required and n not in names]
    assert not missing, f"<{where}> lacks required children: {missing}"


@pytest.fixture(scope="module")
def root() -> ET.Element:
    return parse(render_manifest(BASE))


@pytest.fixture(scope="module")
def vo11(root: ET.Element) -> ET.Element:
    outer = root.find(q(VO10, "VersionOverrides"))
    assert outer is not None, "no VersionOverrides 1.0"
    inner = outer.find(q(VO11, "VersionOverrides"))
    assert inner is not None, "no VersionOverrides 1.1 inside VersionOverrides 1.0"
    return inner


def resources(vo11: ET.Element) -> dict[str, str]:
    """resid -> DefaultValue of every bt:Image, bt:Url and bt:String in Resources."""
    res = vo11.find(q(VO11, "Resources"))
    assert res is not None
    defined: dict[str, str] = {}
    for kind in ("Images", "Urls", "ShortStrings", "LongStrings"):
        for item in res.iterfind(f"{q(BT, kind)}/*"):
            rid = item.get("id")
            assert rid, f"a resource in {kind} has no id"
            assert rid not in defined, f"resource id {rid!r} is defined twice"
            assert len(rid) <= 32, f"resource id {rid!r} is longer than 32 characters"
            defined[rid] = item.get("DefaultValue", "")
    return defined


def manifest_urls(root: ET.Element) -> list[str]:
    """Every URL the manifest names: DefaultValue attributes that are URLs, AppDomains."""
    urls = [
        el.get("DefaultValue", "")
        for el in root.iter()
        if re.match(r"^[a-z][a-z0-9+.-]*://", el.get("DefaultValue", ""), re.I)
    ]
    urls += [el.text or "" for el in root.iter(q(OFFICE, "AppDomain"))]
    return urls


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    return struct.unpack(">II", data[16:24])


def url_to_file(url: str) -> Path:
    assert url.startswith(BASE + "/"), url
    return ROOT / url[len(BASE) + 1 :]


def test_manifest_refuses_a_plain_http_base_url() -> None:
    with pytest.raises(ValueError, match=r"not an HTTPS address.*https://"):
        render_manifest("http://example.com")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "example.com",
        "ftp://example.com",
        "https://",
        "https://example.com/?x=1",
        "https://example.com/#top",
    ],
)
def test_manifest_refuses_a_base_url_that_is_not_a_plain_https_address(bad: str) -> None:
    with pytest.raises(ValueError):
        render_manifest(bad)


def test_manifest_strips_the_trailing_slash_of_the_base_url() -> None:
    text = render_manifest("https://calsync.example.com/")
    assert text == render_manifest("https://calsync.example.com")
    assert "https://calsync.example.com/addin/taskpane.html" in text
    assert "example.com//" not in text


def test_manifest_urls_follow_a_base_url_with_a_path() -> None:
    root = parse(render_manifest("https://example.com/calsync/"))
    urls = manifest_urls(root)
    assert "https://example.com/calsync/addin/taskpane.html" in urls
    assert all(u.startswith("https://example.com/calsync") for u in urls)


def test_committed_manifest_equals_the_generator_output_for_localhost() -> None:
    committed = (ROOT / "manifest.xml").read_text(encoding="utf-8")
    assert committed == render_manifest(manifest_mod.DEV_BASE_URL), (
        "manifest.xml drifted from the template: regenerate it with "
        "write_manifest('https://localhost:3000', 'manifest.xml')"
    )


def test_manifest_is_well_formed_outlook_mail_app(root: ET.Element) -> None:
    assert root.tag == q(OFFICE, "OfficeApp")
    assert root.get(XSI_TYPE) == "MailApp"
    assert uuid.UUID(root.findtext(q(OFFICE, "Id")))
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", root.findtext(q(OFFICE, "Version")) or "")
    assert root.findtext(q(OFFICE, "ProviderName")) == "calsync"
    assert root.findtext(q(OFFICE, "DefaultLocale")) == "en-US"
    assert root.find(q(OFFICE, "DisplayName")).get("DefaultValue") == "calsync"
    assert root.find(q(OFFICE, "Description")).get("DefaultValue")
    assert [h.get("Name") for h in root.iterfind(f"{q(OFFICE, 'Hosts')}/*")] == ["Mailbox"]
    sets = root.findall(f"{q(OFFICE, 'Requirements')}/{q(OFFICE, 'Sets')}/{q(OFFICE, 'Set')}")
    assert [(s.get("Name"), s.get("MinVersion")) for s in sets] == [("Mailbox", "1.1")]
    assert root.findtext(q(OFFICE, "Permissions")) == "ReadWriteItem"
    assert root.findtext(q(OFFICE, "DisableEntityHighlighting")) == "true"


def test_manifest_officeapp_children_follow_the_xsd_order(root: ET.Element) -> None:
    assert_follows_sequence(root, OFFICEAPP_SEQUENCE)
    # Everything the brief lists is there, not only the XSD's required part.
    names = [local(child.tag) for child in root]
    expected = [n for n, _ in OFFICEAPP_SEQUENCE if n != "AlternateId"]
    assert names == expected


def test_manifest_version_overrides_children_follow_the_xsd_order(
    root: ET.Element, vo11: ET.Element
) -> None:
    outer = root.find(q(VO10, "VersionOverrides"))
    assert outer.get(XSI_TYPE) == "VersionOverridesV1_0"
    assert_follows_sequence(outer, VO10_SEQUENCE)
    assert vo11.get(XSI_TYPE) == "VersionOverridesV1_1"
    assert_follows_sequence(vo11, VO11_SEQUENCE)
    assert [local(c.tag) for c in vo11] == [
        "Requirements",
        "Hosts",
        "Resources",
        "WebApplicationInfo",
    ]
    assert_follows_sequence(vo11.find(q(VO11, "Resources")), RESOURCES_SEQUENCE)
    assert_follows_sequence(vo11.find(q(VO11, "WebApplicationInfo")), WEB_APP_INFO_SEQUENCE)
    for form_factor in vo11.iter(q(VO11, "DesktopFormFactor")):
        assert_follows_sequence(form_factor, FORM_FACTOR_SEQUENCE)
    for group in vo11.iter(q(VO11, "Group")):
        assert_follows_sequence(group, GROUP_SEQUENCE)
    for control in vo11.iter(q(VO11, "Control")):
        assert control.get(XSI_TYPE) == "Button"
        assert_follows_sequence(control, BUTTON_SEQUENCE)
        assert_follows_sequence(control.find(q(VO11, "Supertip")), SUPERTIP_SEQUENCE)
        action = control.find(q(VO11, "Action"))
        assert action.get(XSI_TYPE) == "ShowTaskpane"
        assert_follows_sequence(action, SHOW_TASKPANE_SEQUENCE)


def test_manifest_form_settings_open_the_taskpane_for_older_clients(root: ET.Element) -> None:
    forms = root.findall(f"{q(OFFICE, 'FormSettings')}/{q(OFFICE, 'Form')}")
    assert [f.get(XSI_TYPE) for f in forms] == ["ItemRead", "ItemEdit"]
    for form in forms:
        desktop = form.find(q(OFFICE, "DesktopSettings"))
        assert_follows_sequence(desktop, MAIL_DESKTOP_SETTINGS_SEQUENCE)
        source = desktop.find(q(OFFICE, "SourceLocation")).get("DefaultValue")
        assert source == f"{BASE}/addin/taskpane.html"


def test_manifest_activates_on_messages_read_and_appointments_read_and_edit(
    root: ET.Element,
) -> None:
    rule = root.find(q(OFFICE, "Rule"))
    assert rule.get(XSI_TYPE) == "RuleCollection"
    assert rule.get("Mode") == "Or"
    items = {(r.get(XSI_TYPE), r.get("ItemType"), r.get("FormType")) for r in rule}
    assert items == {
        ("ItemIs", "Message", "Read"),
        ("ItemIs", "Appointment", "Read"),
        ("ItemIs", "Appointment", "Edit"),
    }


def test_manifest_button_opens_taskpane_on_message_read_and_appointments(
    vo11: ET.Element,
) -> None:
    defined = resources(vo11)
    sets = vo11.findall(f"{q(VO11, 'Requirements')}/{q(BT, 'Sets')}")
    assert len(sets) == 1
    assert float(sets[0].get("DefaultMinVersion")) >= 1.5  # SupportsPinning needs Mailbox 1.5
    assert [s.get("Name") for s in sets[0]] == ["Mailbox"]
    hosts = vo11.findall(f"{q(VO11, 'Hosts')}/{q(VO11, 'Host')}")
    assert [h.get(XSI_TYPE) for h in hosts] == ["MailHost"]
    points = hosts[0].findall(f"{q(VO11, 'DesktopFormFactor')}/{q(VO11, 'ExtensionPoint')}")
    assert sorted(p.get(XSI_TYPE) for p in points) == sorted(EXTENSION_POINTS)
    ids = [el.get("id") for el in vo11.iter() if local(el.tag) in ("Group", "Control")]
    assert len(ids) == len(set(ids)), f"group/control ids must be unique: {ids}"
    for point in points:
        buttons = list(point.iter(q(VO11, "Control")))
        assert len(buttons) == 1, point.get(XSI_TYPE)
        button = buttons[0]
        assert button.get(XSI_TYPE) == "Button"
        assert defined[button.find(q(VO11, "Label")).get("resid")] == "Connector sidebar"
        action = button.find(q(VO11, "Action"))
        assert action.get(XSI_TYPE) == "ShowTaskpane"
        source = action.find(q(VO11, "SourceLocation")).get("resid")
        assert defined[source] == f"{BASE}/addin/taskpane.html"
        assert action.findtext(q(VO11, "SupportsPinning")) == "true"
        tab = point.find(q(VO11, "OfficeTab"))
        assert tab is not None and tab.get("id") == "TabDefault"


def test_manifest_every_referenced_resid_is_defined_in_resources(vo11: ET.Element) -> None:
    defined = resources(vo11)
    referenced = {el.get("resid") for el in vo11.iter() if el.get("resid") is not None}
    # Buttons' icons, labels, tooltips (Supertip) and the task pane URL at least.
    assert {"Icon.16x16", "Icon.32x32", "Icon.80x80", "Taskpane.Url"} <= referenced
    assert referenced - defined.keys() == set(), "resids used but not defined"
    # Each kind of reference points at the right kind of resource.
    res = vo11.find(q(VO11, "Resources"))
    kinds = {
        kind: {el.get("id") for el in res.iterfind(f"{q(BT, kind)}/*")}
        for kind in ("Images", "Urls", "ShortStrings", "LongStrings")
    }
    for el in vo11.iter():
        rid, tag = el.get("resid"), local(el.tag)
        if rid is None:
            continue
        if tag == "Image":
            assert rid in kinds["Images"], rid
        elif tag == "SourceLocation":
            assert rid in kinds["Urls"], rid
        elif tag in ("Label", "Title"):
            assert rid in kinds["ShortStrings"], rid
        elif tag == "Description":
            assert rid in kinds["LongStrings"], rid


def test_manifest_urls_are_https_and_under_the_base_url(root: ET.Element) -> None:
    urls = manifest_urls(root)
    assert len(urls) >= 10
    for url in urls:
        assert urlsplit(url).scheme == "https", url
        assert url == BASE or url.startswith(BASE + "/"), url


def test_manifest_pages_exist_under_addin_except_the_taskpane_built_elsewhere(
    root: ET.Element,
) -> None:
    pages = {u for u in manifest_urls(root) if u.endswith(".html")}
    assert pages == {f"{BASE}/addin/taskpane.html", f"{BASE}/addin/support.html"}
    assert root.find(q(OFFICE, "SupportUrl")).get("DefaultValue") == f"{BASE}/addin/support.html"
    for url in pages:
        path = url_to_file(url)
        if path.name == "taskpane.html" and not path.exists():
            continue  # the task pane UI lands separately; checked once it exists
        assert path.is_file(), f"{url} has no file {path.relative_to(ROOT)}"


def test_manifest_icons_exist_with_their_declared_pixel_size(
    root: ET.Element, vo11: ET.Element
) -> None:
    declared: dict[str, int] = {
        root.find(q(OFFICE, "IconUrl")).get("DefaultValue"): 64,
        root.find(q(OFFICE, "HighResolutionIconUrl")).get("DefaultValue"): 128,
    }
    images = resources(vo11)
    for image in vo11.iter(q(BT, "Image")):
        if image.get("resid"):  # a button's <bt:Image size=".." resid=".."/>
            declared[images[image.get("resid")]] = int(image.get("size"))
    assert sorted(declared.values()) == [16, 32, 64, 80, 128]
    for url, size in declared.items():
        path = url_to_file(url)
        assert path.is_file(), f"icon {url} has no file {path.relative_to(ROOT)}"
        assert path.name == f"icon-{size}.png"
        assert png_size(path) == (size, size), f"{path.name} is not {size}x{size}"


def png_rgba(path: Path) -> bytes:
    """The pixels of an 8-bit RGBA PNG written by make_icons.py (filter 0 on every row)."""
    data = path.read_bytes()
    width, height = png_size(path)
    assert data[24:26] == bytes((8, 6)), f"{path.name} is not 8-bit RGBA"
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 4 + 1
    assert len(raw) == stride * height
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows), f"{path.name} uses PNG row filters"
    return b"".join(row[1:] for row in rows)


def test_icon_files_are_what_make_icons_draws() -> None:
    # Pixels, not bytes: another zlib build may compress the same pixels differently.
    spec = importlib.util.spec_from_file_location("make_icons", ADDIN / "assets" / "make_icons.py")
    make_icons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icons)
    for size in make_icons.SIZES:
        committed = png_rgba(ADDIN / "assets" / f"icon-{size}.png")
        assert committed == make_icons.render_rgba(size), (
            f"icon-{size}.png differs from make_icons.py: run python addin/assets/make_icons.py"
        )


def test_manifest_declares_sso_with_a_placeholder_client_id_by_default(
    vo11: ET.Element,
) -> None:
    info = vo11.find(q(VO11, "WebApplicationInfo"))
    zero = "00000000-0000-0000-0000-000000000000"
    assert info.findtext(q(VO11, "Id")) == zero
    assert info.findtext(q(VO11, "Resource")) == f"api://localhost:3000/{zero}"
    scopes = [s.text for s in info.iterfind(f"{q(VO11, 'Scopes')}/{q(VO11, 'Scope')}")]
    assert scopes == ["openid", "profile"]


def test_manifest_uses_the_given_client_id_and_add_in_id() -> None:
    client = "12345678-ABCD-1234-EFAB-123456789ABC"
    app = "11111111-2222-3333-4444-555555555555"
    root = parse(render_manifest("https://calsync.example.com", app_id=app, client_id=client))
    info = root.find(
        f"{q(VO10, 'VersionOverrides')}/{q(VO11, 'VersionOverrides')}"
        f"/{q(VO11, 'WebApplicationInfo')}"
    )
    assert info.findtext(q(VO11, "Id")) == client.lower()
    assert info.findtext(q(VO11, "Resource")) == f"api://calsync.example.com/{client.lower()}"
    assert root.findtext(q(OFFICE, "Id")) == app


def test_manifest_refuses_an_id_that_is_not_a_guid() -> None:
    with pytest.raises(ValueError, match="not a GUID"):
        render_manifest(BASE, client_id="my-app")
    with pytest.raises(ValueError, match="not a GUID"):
        render_manifest(BASE, app_id="calsync")


def test_manifest_keeps_the_same_add_in_id_across_deployments() -> None:
    ids = {
        parse(render_manifest(url)).findtext(q(OFFICE, "Id"))
        for url in (BASE, "https://calsync.example.com", "https://crm.example.org:8443/x")
    }
    assert ids == {manifest_mod.APP_ID}


def test_write_manifest_writes_the_rendered_manifest(tmp_path: Path) -> None:
    path = write_manifest("https://calsync.example.com/", tmp_path / "manifest.xml")
    assert path.read_bytes() == render_manifest("https://calsync.example.com").encode("utf-8")


def test_main_manifest_writes_a_file_or_refuses_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.xml"
    assert main_manifest("https://calsync.example.com", str(out)) == 0
    assert out.read_text(encoding="utf-8") == render_manifest("https://calsync.example.com")
    assert main_manifest("http://calsync.example.com", str(tmp_path / "no.xml")) == 2
    assert "HTTPS" in capsys.readouterr().err
    assert not (tmp_path / "no.xml").exists()
    assert main_manifest(BASE, None) == 0
    assert capsys.readouterr().out == render_manifest(BASE)
