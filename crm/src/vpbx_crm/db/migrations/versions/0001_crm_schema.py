"""CRM schema: contacts and their phones, companies, pipelines, deals, tasks, notes, calls

Revision ID: 0001
Revises:
Create Date: 2026-12-07 13:13:02.228799
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_companies",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phones", sa.JSON(), nullable=False),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("website", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("tax_id", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("owner_user_id", sa.Uuid(), nullable=True),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_companies")),
    )
    with op.batch_alter_table("crm_companies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_companies_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_crm_companies_tenant_name", ["tenant_id", "name"], unique=False)

    op.create_table(
        "crm_pipelines",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_pipelines")),
    )
    with op.batch_alter_table("crm_pipelines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_pipelines_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "crm_contacts",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("region_name", sa.String(length=200), nullable=False),
        sa.Column("owner_user_id", sa.Uuid(), nullable=True),
        sa.Column("vip", sa.Boolean(), nullable=False),
        sa.Column("source_label", sa.String(length=63), nullable=False),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["crm_companies.id"],
            name=op.f("fk_crm_contacts_company_id_crm_companies"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_contacts")),
    )
    with op.batch_alter_table("crm_contacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crm_contacts_company_id"), ["company_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_crm_contacts_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_crm_contacts_tenant_name", ["tenant_id", "name"], unique=False)
        batch_op.create_index(
            "ix_crm_contacts_tenant_owner", ["tenant_id", "owner_user_id"], unique=False
        )

    op.create_table(
        "crm_stages",
        sa.Column("pipeline_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("open", "won", "lost", name="crm_stage_kind", native_enum=False),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["crm_pipelines.id"],
            name=op.f("fk_crm_stages_pipeline_id_crm_pipelines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_stages")),
    )
    with op.batch_alter_table("crm_stages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crm_stages_pipeline_id"), ["pipeline_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_crm_stages_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "crm_calls",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=63), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("callee", sa.String(length=200), nullable=False),
        sa.Column("answered_by", sa.String(length=32), nullable=False),
        sa.Column("answered_user_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("end_reason", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recording_key", sa.String(length=300), nullable=False),
        sa.Column("recording_ms", sa.Integer(), nullable=False),
        sa.Column("voicemail_key", sa.String(length=300), nullable=False),
        sa.Column("voicemail_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_calls_contact_id_crm_contacts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "call_id", name=op.f("pk_crm_calls")),
    )
    with op.batch_alter_table("crm_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_crm_calls_contact_started", ["contact_id", "started_at"], unique=False
        )

    op.create_table(
        "crm_contact_phones",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_contact_phones_contact_id_crm_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "phone", name=op.f("pk_crm_contact_phones")),
    )
    with op.batch_alter_table("crm_contact_phones", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crm_contact_phones_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "crm_deals",
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("pipeline_id", sa.Uuid(), nullable=False),
        sa.Column("stage_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("owner_user_id", sa.Uuid(), nullable=True),
        sa.Column("loss_reason", sa.String(length=200), nullable=False),
        sa.Column("source_label", sa.String(length=63), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["crm_companies.id"],
            name=op.f("fk_crm_deals_company_id_crm_companies"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_deals_contact_id_crm_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["crm_pipelines.id"],
            name=op.f("fk_crm_deals_pipeline_id_crm_pipelines"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["stage_id"],
            ["crm_stages.id"],
            name=op.f("fk_crm_deals_stage_id_crm_stages"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_deals")),
    )
    with op.batch_alter_table("crm_deals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_deals_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_crm_deals_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_crm_deals_pipeline_id"), ["pipeline_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_crm_deals_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_crm_deals_tenant_stage", ["tenant_id", "stage_id"], unique=False)

    op.create_table(
        "crm_deal_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("deal_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "created",
                "moved",
                "won",
                "lost",
                "reopened",
                name="crm_deal_event_kind",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("from_stage_id", sa.Uuid(), nullable=True),
        sa.Column("to_stage_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["crm_deals.id"],
            name=op.f("fk_crm_deal_events_deal_id_crm_deals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_deal_events")),
    )
    with op.batch_alter_table("crm_deal_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_deal_events_deal_id"), ["deal_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_crm_deal_events_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "crm_notes",
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("deal_id", sa.Uuid(), nullable=True),
        sa.Column("author_user_id", sa.Uuid(), nullable=True),
        sa.Column("text", sa.String(length=10000), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["crm_companies.id"],
            name=op.f("fk_crm_notes_company_id_crm_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_notes_contact_id_crm_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["crm_deals.id"],
            name=op.f("fk_crm_notes_deal_id_crm_deals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_notes")),
    )
    with op.batch_alter_table("crm_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_notes_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_crm_notes_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_crm_notes_deal_id"), ["deal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_crm_notes_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "crm_tasks",
        sa.Column(
            "kind",
            sa.Enum(
                "call-back",
                "missed-call",
                "voicemail",
                "follow-up",
                name="crm_task_kind",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column(
            "status",
            sa.Enum("open", "done", "cancelled", name="crm_task_status", native_enum=False),
            nullable=False,
        ),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("deal_id", sa.Uuid(), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("assignee_user_id", sa.Uuid(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=2000), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_tasks_contact_id_crm_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["crm_deals.id"],
            name=op.f("fk_crm_tasks_deal_id_crm_deals"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_tasks")),
        sa.UniqueConstraint(
            "tenant_id", "call_id", "kind", name=op.f("uq_crm_tasks_tenant_id_call_id_kind")
        ),
    )
    with op.batch_alter_table("crm_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_tasks_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(
            "ix_crm_tasks_tenant_assignee_status",
            ["tenant_id", "assignee_user_id", "status"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_crm_tasks_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "crm_notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_notifications_contact_id_crm_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["crm_tasks.id"],
            name=op.f("fk_crm_notifications_task_id_crm_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_notifications")),
    )
    with op.batch_alter_table("crm_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_crm_notifications_user", ["tenant_id", "user_id", "read_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("crm_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_notifications_user")

    op.drop_table("crm_notifications")
    with op.batch_alter_table("crm_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_tasks_tenant_id"))
        batch_op.drop_index("ix_crm_tasks_tenant_assignee_status")
        batch_op.drop_index(batch_op.f("ix_crm_tasks_contact_id"))

    op.drop_table("crm_tasks")
    with op.batch_alter_table("crm_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_notes_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_crm_notes_deal_id"))
        batch_op.drop_index(batch_op.f("ix_crm_notes_contact_id"))
        batch_op.drop_index(batch_op.f("ix_crm_notes_company_id"))

    op.drop_table("crm_notes")
    with op.batch_alter_table("crm_deal_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_deal_events_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_crm_deal_events_deal_id"))

    op.drop_table("crm_deal_events")
    with op.batch_alter_table("crm_deals", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_deals_tenant_stage")
        batch_op.drop_index(batch_op.f("ix_crm_deals_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_crm_deals_pipeline_id"))
        batch_op.drop_index(batch_op.f("ix_crm_deals_contact_id"))
        batch_op.drop_index(batch_op.f("ix_crm_deals_company_id"))

    op.drop_table("crm_deals")
    with op.batch_alter_table("crm_contact_phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_contact_phones_contact_id"))

    op.drop_table("crm_contact_phones")
    with op.batch_alter_table("crm_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_calls_contact_started")

    op.drop_table("crm_calls")
    with op.batch_alter_table("crm_stages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_stages_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_crm_stages_pipeline_id"))

    op.drop_table("crm_stages")
    with op.batch_alter_table("crm_contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_contacts_tenant_owner")
        batch_op.drop_index("ix_crm_contacts_tenant_name")
        batch_op.drop_index(batch_op.f("ix_crm_contacts_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_crm_contacts_company_id"))

    op.drop_table("crm_contacts")
    with op.batch_alter_table("crm_pipelines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_pipelines_tenant_id"))

    op.drop_table("crm_pipelines")
    with op.batch_alter_table("crm_companies", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_companies_tenant_name")
        batch_op.drop_index(batch_op.f("ix_crm_companies_tenant_id"))

    op.drop_table("crm_companies")
