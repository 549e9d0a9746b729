"""/v1/imports and /v1/exports: contacts and companies in and out as CSV and Excel files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import event, select
from tests.services.crm import CrmHarness, crm_tenant, serve_crm

from vpbx_control.auth.principal import Role
from vpbx_crm.companies.models import CompanyRow
from vpbx_crm.db.migrate import upgrade
from vpbx_crm.transfer import exporting
from vpbx_crm.transfer.owners import Owners
from vpbx_crm.transfer.schemas import CsvDelimiter

pytestmark = pytest.mark.asyncio(loop_scope="module")

Rows = list[list[Any]]


def csv_bytes(rows: Rows, *, delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue().encode(encoding)


def xlsx_bytes(rows: Rows) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def read_csv(response: httpx.Response, delimiter: str = ",") -> Rows:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=delimiter))


def read_xlsx(response: httpx.Response) -> Rows:
    workbook = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    rows = [list(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]
    workbook.close()
    return rows


async def upload(
    crm: CrmHarness,
    what: str,
    data: bytes,
    headers: dict[str, str],
    *,
    filename: str = "file.csv",
    mapping: dict[str, str | None] | None = None,
    **params: Any,
) -> httpx.Response:
    query = {
        key: str(value).lower() if isinstance(value, bool) else value
        for key, value in params.items()
    }
    return await crm.client.post(
        f"/v1/imports/{what}",
        params=query,
        files={"file": (filename, data, "application/octet-stream")},
        data={"mapping": json.dumps(mapping)} if mapping is not None else None,
        headers=headers,
    )


async def contacts(crm: CrmHarness, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    listed = await crm.client.get("/v1/contacts", params={"limit": 200, **params}, headers=headers)
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def problems(body: dict[str, Any]) -> list[tuple[int, str]]:
    return [(error["row"], error["field"]) for error in body["errors"]]


async def test_a_csv_file_becomes_contacts_with_phones_owners_and_companies(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(
        tenant, name="Olga Smirnova", email=f"olga@{tenant}.example"
    )
    companies = await upload(
        module_crm, "companies", csv_bytes([["name", "tax_id"], ["Ромашка", "7701234567"]]), admin
    )
    assert companies.status_code == 201, companies.text
    data = csv_bytes(
        [
            [
                "name",
                "phones",
                "email",
                "company",
                "category",
                "owner",
                "vip",
                "source_label",
                "custom.orders",
            ],
            [
                "Иван Петров",
                "+7 (916) 123-45-67; 8 495 111-22-33",
                "ivan@example.ru",
                "ромашка",
                "supplier",
                f"OLGA@{tenant}.example",
                "yes",
                "avito",
                "12",
            ],
            ["Анна", "79161112233", "", "Лютик", "", "Olga Smirnova", "no", "", ""],
        ]
    )
    created = await upload(module_crm, "contacts", data, admin, create_companies=True)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "unchanged": 0,
        "companies_created": 1,
        "ignored_columns": [],
    }
    found = by_name(await contacts(module_crm, admin))
    ivan, anna = found["Иван Петров"], found["Анна"]
    assert ivan["phones"] == ["+79161234567", "+74951112233"]
    assert ivan["emails"] == ["ivan@example.ru"]
    assert ivan["category"] == "supplier"
    assert ivan["owner_user_id"] == anna["owner_user_id"] == str(olga.id)
    assert (ivan["vip"], anna["vip"]) == (True, False)
    assert ivan["source_label"] == "avito"
    assert ivan["custom"] == {"orders": "12"}
    assert ivan["region"] == "RU-MOW"
    assert anna["category"] == "client"
    assert None not in (ivan["company_id"], anna["company_id"])
    assert ivan["company_id"] != anna["company_id"]  # Ромашка was there; Лютик is new
    exported = read_csv(await module_crm.client.get("/v1/exports/companies", headers=admin))
    assert sorted(row[1] for row in exported[1:]) == ["Лютик", "Ромашка"]
    # The node routes a call from the imported phone to the imported owner.
    lookup = await module_crm.client.get(
        f"/internal/v1/lookup/{tenant}", params={"phone": "+74951112233"}, headers=module_crm.node
    )
    assert lookup.json()["contact"]["owner_user_id"] == str(olga.id)


async def test_an_excel_workbook_in_russian_with_a_mapping_for_the_tenants_own_column(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Ольга", email=f"olga@{tenant}.example")
    data = xlsx_bytes(
        [
            [
                "Фамилия",
                "Имя",
                "Отчество",
                "Телефон",
                "Телефон 2",
                "E-mail",
                "Категория",
                "Ответственный",
                "VIP",
                "Заказы",
                "Комментарий",
            ],
            [
                "Петров",
                "Иван",
                "Сергеевич",
                89161234567,
                "+7 495 111-22-33",
                "p@example.ru",
                "Поставщик",
                "Ольга",
                "да",
                5,
                "звонить после обеда",
            ],
            [None, None, None, None, None, None, None, None, None, None, None],
            [
                "Сидорова",
                "Анна",
                None,
                "8 (916) 765-43-21",
                None,
                None,
                "партнёр",
                None,
                "нет",
                2.5,
                None,
            ],
        ]
    )
    mapping = {"Заказы": "custom.orders"}
    preview = await upload(
        module_crm, "contacts", data, admin, filename="клиенты.xlsx", mapping=mapping, dry_run=True
    )
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["file"] == {"format": "xlsx", "encoding": None, "delimiter": None}
    assert body["columns"] == {
        "Фамилия": "last_name",
        "Имя": "name",
        "Отчество": "middle_name",
        "Телефон": "phones",
        "Телефон 2": "phones",
        "E-mail": "emails",
        "Категория": "category",
        "Ответственный": "owner",
        "VIP": "vip",
        "Заказы": "custom.orders",
        "Комментарий": None,
    }
    assert (body["rows"], body["valid"]) == (2, 2)
    # The empty row in between is skipped but counted: Сидорова is on line 4 of the sheet.
    assert [item["row"] for item in body["sample"]] == [2, 4]
    created = await upload(module_crm, "contacts", data, admin, mapping=mapping)
    assert created.status_code == 201, created.text
    assert created.json()["ignored_columns"] == ["Комментарий"]
    found = by_name(await contacts(module_crm, admin))
    petrov = found["Петров Иван Сергеевич"]
    assert petrov["phones"] == ["+79161234567", "+74951112233"]
    assert petrov["category"] == "supplier"
    assert petrov["owner_user_id"] == str(olga.id)
    assert petrov["vip"] is True
    assert petrov["custom"] == {"orders": 5}  # a number stays a number
    sidorova = found["Сидорова Анна"]
    assert sidorova["phones"] == ["+79167654321"]
    assert (sidorova["category"], sidorova["vip"], sidorova["custom"]) == (
        "partner",
        False,
        {"orders": 2.5},
    )


@pytest.mark.parametrize(
    ("encoding", "delimiter", "reported"),
    [("cp1251", ";", "cp1251"), ("utf-8-sig", ";", "utf-8-sig"), ("utf-8", ",", "utf-8")],
)
async def test_csv_as_excel_saves_it_in_russian(
    module_crm: CrmHarness, encoding: str, delimiter: str, reported: str
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    data = csv_bytes(
        [
            ["ФИО", "Телефон", "Категория", "VIP"],
            ["Ёжиков Пётр", "8-916-000-00-01", "Клиент", "Да"],
        ],
        delimiter=delimiter,
        encoding=encoding,
    )
    preview = await upload(module_crm, "contacts", data, admin, dry_run=True)
    assert preview.status_code == 200, preview.text
    assert preview.json()["file"] == {"format": "csv", "encoding": reported, "delimiter": delimiter}
    assert preview.json()["sample"][0]["name"] == "Ёжиков Пётр"
    assert (await upload(module_crm, "contacts", data, admin)).status_code == 201
    [contact] = await contacts(module_crm, admin)
    assert (contact["name"], contact["phones"]) == ("Ёжиков Пётр", ["+79160000001"])
    assert (contact["category"], contact["vip"]) == ("client", True)


async def test_the_preview_says_what_an_import_would_do_and_writes_nothing(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    rows: Rows = [["Имя", "Телефон", "Компания", "Примечание"]]
    rows += [[f"Клиент {n:02d}", f"+7916000{n:04d}", "Ромашка", "x"] for n in range(12)]
    preview = await upload(
        module_crm, "contacts", csv_bytes(rows), admin, dry_run=True, create_companies=True
    )
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["rows"], body["valid"], body["error_count"], body["errors"]) == (12, 12, 0, [])
    assert body["columns"] == {
        "Имя": "name",
        "Телефон": "phones",
        "Компания": "company",
        "Примечание": None,
    }
    assert len(body["sample"]) == 10
    assert body["sample"][0] == {
        "row": 2,
        "action": "create",
        "id": None,
        "name": "Клиент 00",
        "phones": ["+79160000000"],
        "emails": [],
        "company": "Ромашка",
        "company_id": None,
        "category": "client",
        "owner_user_id": None,
        "vip": False,
        "source_label": "",
        "custom": {},
        "region": "RU-MOW",
        "region_name": "Moscow",
    }
    assert (body["would_create"], body["would_update"], body["would_skip"]) == (12, 0, 0)
    assert body["new_companies"] == ["Ромашка"]
    assert await contacts(module_crm, admin) == []
    companies = read_csv(await module_crm.client.get("/v1/exports/companies", headers=admin))
    assert companies[1:] == []


async def test_a_file_with_bad_rows_imports_nothing_and_names_each_problem(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    await module_crm.control.add_user(tenant, name="Olga", email=f"olga@{tenant}.example")
    data = csv_bytes(
        [
            ["name", "phones", "owner", "vip"],
            ["Good", "+79161230001", f"olga@{tenant}.example", "yes"],
            ["Bad phone", "12345", "", "no"],
            ["Unknown owner", "+79161230002", "nobody@nowhere.example", ""],
            ["Repeated phone", "8 916 123-00-01", "", ""],
            ["Bad VIP", "+79161230003", "", "может быть"],
            ["", "+79161230004", "", ""],
        ]
    )
    refused = await upload(module_crm, "contacts", data, admin)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["error_id"] == "import-rejected"
    assert body["message"] == "nothing was imported: 5 problem(s) in 5 of 6 rows"
    assert problems(body) == [(3, "phones"), (4, "owner"), (5, "phones"), (6, "vip"), (7, "name")]
    messages = {error["row"]: error["message"] for error in body["errors"]}
    assert "12345" in messages[3]
    assert "nobody@nowhere.example" in messages[4]
    assert messages[5] == "+79161230001 is also on row 2"
    assert "может быть" in messages[6]
    assert (body["rows"], body["valid"]) == (6, 1)
    assert body["details"][0] == {"field": "rows[3].phones", "message": messages[3]}
    assert await contacts(module_crm, admin) == []
    # The preview lists the same problems and shows the good row.
    preview = (await upload(module_crm, "contacts", data, admin, dry_run=True)).json()
    assert problems(preview) == problems(body)
    assert [item["name"] for item in preview["sample"]] == ["Good"]


async def test_a_phone_the_crm_has_is_an_error_unless_skipped_or_updated(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    old = await module_crm.client.post(
        "/v1/contacts",
        json={"name": "Old name", "phones": ["+79161234567"], "custom": {"orders": 3}},
        headers=admin,
    )
    assert old.status_code == 201
    path = f"/v1/contacts/{old.json()['id']}"
    data = csv_bytes(
        [
            ["name", "phones", "category", "custom.note"],
            ["New name", "8 916 123-45-67", "partner", "важный"],
            ["Fresh", "+79160000001", "client", ""],
        ]
    )
    refused = await upload(module_crm, "contacts", data, admin)
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert (error["row"], error["field"]) == (2, "phones")
    assert "+79161234567 already belongs to 'Old name'" in error["message"]
    assert len(await contacts(module_crm, admin)) == 1  # not even Fresh

    skipped = await upload(module_crm, "contacts", data, admin, on_duplicate="skip")
    assert skipped.status_code == 201, skipped.text
    assert (skipped.json()["created"], skipped.json()["skipped"]) == (1, 1)
    unchanged = await module_crm.client.get(path, headers=admin)
    assert (unchanged.json()["name"], unchanged.headers["ETag"]) == (
        "Old name",
        old.headers["ETag"],
    )

    updated = await upload(module_crm, "contacts", data, admin, on_duplicate="update")
    assert updated.status_code == 201, updated.text
    assert updated.json() == {
        "created": 0,
        "updated": 1,
        "skipped": 0,
        "unchanged": 1,  # Fresh, created by the skip run
        "companies_created": 0,
        "ignored_columns": [],
    }
    changed = await module_crm.client.get(path, headers=admin)
    assert changed.json()["name"] == "New name"
    assert changed.json()["category"] == "partner"
    assert changed.json()["phones"] == ["+79161234567"]
    # The file's custom column is set; the contact's other custom fields stay.
    assert changed.json()["custom"] == {"orders": 3, "note": "важный"}
    assert changed.headers["ETag"] != old.headers["ETag"]
    # A skipped row's company is not looked for, let alone created.
    again = csv_bytes([["name", "phones", "company"], ["X", "+79161234567", "Новая"]])
    skipped = await upload(
        module_crm, "contacts", again, admin, on_duplicate="skip", create_companies=True
    )
    assert (skipped.json()["skipped"], skipped.json()["companies_created"]) == (1, 0)


async def test_an_export_imported_again_changes_nothing(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    olga = await module_crm.control.add_user(tenant, name="Olga", email=f"olga@{tenant}.example")
    await upload(module_crm, "companies", csv_bytes([["Название"], ["ООО «Ромашка»"]]), admin)
    company_id = read_csv(await module_crm.client.get("/v1/exports/companies", headers=admin))[1][0]
    for body in (
        {
            "name": "Иван Петров",
            "phones": ["+79161234567", "+74951112233"],
            "emails": ["ivan@example.ru", "petrov@example.ru"],
            "company_id": company_id,
            "category": "supplier",
            "owner_user_id": str(olga.id),
            "vip": True,
            "source_label": "avito",
            "custom": {
                "orders": 12,
                "debt": 15000.5,
                "blocked": False,
                "note": "звонить; после 12",
            },
        },
        {"name": "Без телефона", "emails": ["nophone@example.ru"]},
        {"name": '=HYPERLINK("http://evil.example")', "phones": ["+79160000002"]},
        {"name": "-Минус", "phones": ["+79160000003"], "custom": {"note": "+1+2"}},
    ):
        created = await module_crm.client.post("/v1/contacts", json=body, headers=admin)
        assert created.status_code == 201, created.text
    before = await contacts(module_crm, admin)

    exported = await module_crm.client.get("/v1/exports/contacts", headers=admin)
    rows = read_csv(exported)
    assert rows[0] == [
        "id",
        "name",
        "phones",
        "emails",
        "company",
        "category",
        "owner",
        "vip",
        "source_label",
        "custom.blocked",
        "custom.debt",
        "custom.note",
        "custom.orders",
    ]
    ivan = next(row for row in rows if row[1] == "Иван Петров")
    assert ivan[2:9] == [
        "+79161234567, +74951112233",
        "ivan@example.ru, petrov@example.ru",
        "ООО «Ромашка»",
        "supplier",
        f"olga@{tenant}.example",
        "yes",
        "avito",
    ]
    # Excel would run these as formulas: written as text.
    names = {row[1] for row in rows[1:]}
    assert {'\'=HYPERLINK("http://evil.example")', "'-Минус"} <= names

    for export_format in ("csv", "xlsx"):
        exported = await module_crm.client.get(
            "/v1/exports/contacts", params={"format": export_format}, headers=admin
        )
        assert exported.status_code == 200
        for mode, outcome in (("skip", "skipped"), ("update", "unchanged")):
            again = await upload(module_crm, "contacts", exported.content, admin, on_duplicate=mode)
            assert again.status_code == 201, again.text
            assert again.json()["created"] == again.json()["updated"] == 0
            assert again.json()[outcome] == 4, (export_format, mode)
            assert await contacts(module_crm, admin) == before, (export_format, mode)


async def test_exports_are_files_excel_opens_filtered_like_the_list(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    olga = await module_crm.control.add_user(tenant, name="Olga", email=f"olga@{tenant}.example")
    for name, category, owner in (
        ("Клиент Ольги", "client", str(olga.id)),
        ("Поставщик Ольги", "supplier", str(olga.id)),
        ("Ничей клиент", "client", None),
    ):
        await module_crm.client.post(
            "/v1/contacts",
            json={"name": name, "category": category, "owner_user_id": owner, "phones": []},
            headers=admin,
        )
    exported = await module_crm.client.get("/v1/exports/contacts", headers=supervisor)
    assert exported.status_code == 200
    assert exported.content.startswith("\ufeffid,name,".encode())  # the BOM Excel needs
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["content-disposition"].startswith(
        f'attachment; filename="contacts-{tenant}-'
    )
    assert exported.headers["content-disposition"].endswith('.csv"')
    assert len(read_csv(exported)) == 4

    filtered = await module_crm.client.get(
        "/v1/exports/contacts",
        params={"owner_user_id": str(olga.id), "category": "client", "delimiter": "semicolon"},
        headers=admin,
    )
    assert [row[1] for row in read_csv(filtered, ";")[1:]] == ["Клиент Ольги"]

    workbook = await module_crm.client.get(
        "/v1/exports/contacts", params={"format": "xlsx", "category": "client"}, headers=admin
    )
    assert workbook.status_code == 200
    assert workbook.headers["content-disposition"].endswith('.xlsx"')
    rows = read_xlsx(workbook)
    assert rows[0][:3] == ["id", "name", "phones"]
    assert sorted(row[1] for row in rows[1:]) == ["Клиент Ольги", "Ничей клиент"]


async def test_agents_may_neither_import_nor_export(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    agent = await module_crm.as_role(tenant, Role.AGENT)
    data = csv_bytes([["name", "phones"], ["X", "+79160000001"]])
    for what in ("contacts", "companies"):
        refused = await upload(module_crm, what, data, agent)
        assert refused.status_code == 403, refused.text
        assert (await upload(module_crm, what, data, agent, dry_run=True)).status_code == 403
        exported = await module_crm.client.get(f"/v1/exports/{what}", headers=agent)
        assert exported.status_code == 403
    supervisor = await module_crm.as_role(tenant, Role.SUPERVISOR)
    assert (await upload(module_crm, "contacts", data, supervisor)).status_code == 201
    assert len(await contacts(module_crm, agent)) == 1


async def test_a_tenant_never_sees_or_touches_another_tenants_contacts(
    module_crm: CrmHarness,
) -> None:
    mine, theirs = await crm_tenant(module_crm), await crm_tenant(module_crm)
    admin, other_admin = await module_crm.as_role(mine), await module_crm.as_role(theirs)
    stranger = await module_crm.control.add_user(
        theirs, name="Stranger", email=f"s@{theirs}.example"
    )
    secret = await module_crm.client.post(
        "/v1/contacts",
        json={"name": "Their client", "phones": ["+79165550000"]},
        headers=other_admin,
    )
    await module_crm.client.post(
        "/v1/contacts", json={"name": "My client", "phones": ["+79165550001"]}, headers=admin
    )
    for export_format in ("csv", "xlsx"):
        exported = await module_crm.client.get(
            "/v1/exports/contacts", params={"format": export_format}, headers=admin
        )
        text = str(read_csv(exported) if export_format == "csv" else read_xlsx(exported))
        assert "My client" in text
        assert "Their client" not in text
        assert "+79165550000" not in text
    data = csv_bytes(
        [
            ["id", "name", "phones", "owner"],
            ["", "Same phone", "+79165550000", ""],  # theirs: free in my CRM
            ["", "Their manager", "+79165550002", f"s@{theirs}.example"],
            [secret.json()["id"], "Their client renamed", "", ""],
        ]
    )
    refused = await upload(module_crm, "contacts", data, admin, on_duplicate="update")
    assert refused.status_code == 422
    assert problems(refused.json()) == [(3, "owner"), (4, "id")]
    assert "nobody in your company's directory" in refused.json()["errors"][0]["message"]
    assert str(stranger.id) not in refused.text
    theirs_now = await module_crm.client.get(
        f"/v1/contacts/{secret.json()['id']}", headers=other_admin
    )
    assert theirs_now.json()["name"] == "Their client"


async def test_files_too_large_are_refused_before_anything_is_read(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    header = b"name,phones\n"
    oversize = header + b"x," * ((10 * 1024 * 1024 - len(header)) // 2 + 1)
    refused = await upload(module_crm, "contacts", oversize, admin)
    assert refused.status_code == 413
    assert refused.json()["error_id"] == "import-too-large"
    assert "larger than 10 MB" in refused.json()["message"]
    many = header + b"x,\n" * 100_001
    refused = await upload(module_crm, "contacts", many, admin, dry_run=True)
    assert refused.status_code == 413
    assert "more than 100,000 rows" in refused.json()["message"]
    assert await contacts(module_crm, admin) == []


@pytest.mark.parametrize(
    ("data", "error_id", "message"),
    [
        (b"", "unreadable-file", "the file is empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "unreadable-file", ".xls"),
        (b"PK\x03\x04 not really a zip", "unreadable-file", "not a readable Excel workbook"),
        ("name\nИван\n".encode("utf-16-le"), "unreadable-file", "NUL"),
    ],
)
async def test_what_is_not_a_table_is_refused_naming_the_file(
    module_crm: CrmHarness, data: bytes, error_id: str, message: str
) -> None:
    tenant = await crm_tenant(module_crm)
    refused = await upload(module_crm, "contacts", data, await module_crm.as_role(tenant))
    assert refused.status_code == 422, refused.text
    assert refused.json()["error_id"] == error_id
    assert message in refused.json()["message"]
    assert refused.json()["details"][0]["field"] == "file"


async def test_header_problems_are_problems_of_the_header_row(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    data = csv_bytes(
        [["", ""], ["Телефон", "ФИО", "Имя", "custom.Orders"], ["+79160000001", "A", "B", "1"]]
    )
    preview = await upload(
        module_crm, "contacts", data, admin, dry_run=True, mapping={"Нет такой": "name"}
    )
    assert preview.status_code == 200
    body = preview.json()
    assert problems(body) == [(2, "mapping"), (2, "custom.Orders"), (2, "name")]
    assert "columns 'ФИО', 'Имя' all give the name" in body["errors"][2]["message"]
    assert body["columns"]["custom.Orders"] is None
    nameless = await upload(
        module_crm, "contacts", csv_bytes([["Телефон"], ["+79160000001"]]), admin
    )
    assert nameless.status_code == 422
    assert problems(nameless.json()) == [(1, "name")]
    not_json = await module_crm.client.post(
        "/v1/imports/contacts",
        files={"file": ("f.csv", data, "text/csv")},
        data={"mapping": "{not json"},
        headers=admin,
    )
    assert not_json.status_code == 422
    assert not_json.json()["details"][0]["field"] == "mapping"


async def test_companies_are_matched_by_tax_id_then_name_and_round_trip(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    await module_crm.control.add_user(tenant, name="Olga", email=f"olga@{tenant}.example")
    data = csv_bytes(
        [
            [
                "Название",
                "ИНН",
                "Телефон",
                "Сайт",
                "Адрес",
                "Ответственный",
                "Категория",
                "custom.employees",
            ],
            [
                "ООО «Ромашка»",
                "7701234567",
                "+7 495 111-22-33",
                "romashka.ru",
                "Москва",
                f"olga@{tenant}.example",
                "Поставщик",
                "120",
            ],
            ["Лютик", "", "", "", "", "", "", ""],
        ],
        delimiter=";",
        encoding="cp1251",
    )
    created = await upload(module_crm, "companies", data, admin)
    assert created.status_code == 201, created.text
    assert created.json()["created"] == 2
    # The same ИНН under another spelling is the same company; Лютик is known by its name.
    changes = csv_bytes(
        [
            ["name", "tax_id", "address"],
            ["Ромашка (Москва)", "7701234567", "Тверская, 1"],
            ["лютик", "", "Казань"],
        ]
    )
    refused = await upload(module_crm, "companies", changes, admin)
    assert problems(refused.json()) == [(2, "name"), (3, "name")]
    updated = await upload(module_crm, "companies", changes, admin, on_duplicate="update")
    assert (updated.json()["created"], updated.json()["updated"]) == (0, 2)
    exported = await module_crm.client.get("/v1/exports/companies", headers=admin)
    rows = read_csv(exported)
    assert rows[0] == [
        "id",
        "name",
        "phones",
        "emails",
        "website",
        "address",
        "tax_id",
        "category",
        "owner",
        "custom.employees",
    ]
    romashka = next(row for row in rows if row[6] == "7701234567")
    assert romashka[1:] == [
        "Ромашка (Москва)",
        "+74951112233",
        "",
        "romashka.ru",
        "Тверская, 1",
        "7701234567",
        "supplier",
        f"olga@{tenant}.example",
        "120",
    ]
    for export_format in ("csv", "xlsx"):
        exported = await module_crm.client.get(
            "/v1/exports/companies", params={"format": export_format}, headers=admin
        )
        again = await upload(module_crm, "companies", exported.content, admin, on_duplicate="skip")
        assert (again.json()["created"], again.json()["skipped"]) == (0, 2)
        assert read_csv(await module_crm.client.get("/v1/exports/companies", headers=admin)) == rows
    twice = csv_bytes([["name"], ["Новая"], ["НОВАЯ"]])
    assert problems((await upload(module_crm, "companies", twice, admin)).json()) == [(3, "name")]


async def test_an_import_does_not_query_the_database_per_row(module_crm: CrmHarness) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    await module_crm.control.add_user(tenant, name="Olga", email=f"olga@{tenant}.example")
    rows: Rows = [["name", "phones", "company", "owner"]]
    rows += [
        [f"Client {n}", f"+7916{n:07d}", f"Company {n % 7}", f"olga@{tenant}.example"]
        for n in range(2000)
    ]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = module_crm.context.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for run in ({"dry_run": True}, {}, {"on_duplicate": "update"}):
            statements.clear()
            done = await upload(
                module_crm, "contacts", csv_bytes(rows), admin, create_companies=True, **run
            )
            assert done.status_code in (200, 201), done.text
            # Batches of 500 keys: a handful of statements for 2,000 rows, never one a row.
            assert len(statements) <= 20, (run, len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert done.json()["unchanged"] == 2000


async def test_imports_and_exports_work_on_sqlite_the_embedded_default(
    module_crm: CrmHarness, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await upgrade(url)
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    async with serve_crm(module_crm.control, url, None) as crm:
        data = csv_bytes(
            [
                ["Имя", "Телефон", "Компания", "custom.orders"],
                ["Ёлкина Мария", "+79160000001", "ООО Ромашка", "1"],
                ["Без телефона", "", "ооо ромашка", ""],
            ]
        )
        created = await upload(crm, "contacts", data, admin, create_companies=True)
        assert created.status_code == 201, created.text
        assert (created.json()["created"], created.json()["companies_created"]) == (2, 1)
        before = await contacts(crm, admin)
        for export_format in ("csv", "xlsx"):
            exported = await crm.client.get(
                "/v1/exports/contacts", params={"format": export_format}, headers=admin
            )
            again = await upload(crm, "contacts", exported.content, admin, on_duplicate="update")
            assert again.json()["unchanged"] == 2, again.text
        changed = csv_bytes([["name", "phones"], ["Мария Ёлкина", "8 916 000-00-01"]])
        updated = await upload(crm, "contacts", changed, admin, on_duplicate="update")
        assert updated.json()["updated"] == 1
        after = by_name(await contacts(crm, admin))
        assert after["Мария Ёлкина"]["custom"] == {"orders": "1"}
        assert after["Без телефона"] == by_name(before)["Без телефона"]


async def test_imported_names_are_found_by_a_part_in_any_letter_case(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    body = "name,phones\nООО Ромашка,+79160002233\n".encode()
    imported = await module_crm.client.post(
        "/v1/imports/contacts", files={"file": ("c.csv", body, "text/csv")}, headers=admin
    )
    assert imported.status_code == 201, imported.text
    found = await module_crm.client.get("/v1/contacts", params={"q": "ромашка"}, headers=admin)
    assert [item["name"] for item in found.json()["items"]] == ["ООО Ромашка"]


async def test_a_csv_export_holds_no_database_connection_while_the_client_reads(
    module_crm: CrmHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow reader of a big export must not keep a connection (and a transaction) of the
    pool: each batch is read in a session closed before the batch is handed out."""
    tenant = await crm_tenant(module_crm)
    admin = await module_crm.as_role(tenant)
    for index in range(5):
        created = await module_crm.client.post(
            "/v1/companies", json={"name": f"Firm {index}"}, headers=admin
        )
        assert created.status_code == 201
    monkeypatch.setattr(exporting, "BATCH", 2)
    database = module_crm.context.database
    query = (
        select(CompanyRow)
        .where(CompanyRow.tenant_id == tenant)
        .order_by(CompanyRow.name, CompanyRow.id)
    )
    source = exporting.CompanySource(
        query, Owners.of(await module_crm.context.identity.directory(tenant))
    )
    chunks: list[bytes] = []
    async for chunk in exporting.csv_stream(database, source, CsvDelimiter.COMMA):
        # Here the client holds the chunk for as long as it likes.
        assert database.engine.pool.checkedout() == 0
        chunks.append(chunk)
    assert len(chunks) == 1 + 3  # the header, then batches of 2, 2 and 1
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))
    assert [row[1] for row in rows[1:]] == [f"Firm {index}" for index in range(5)]
