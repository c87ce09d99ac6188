"""Jobs (inference_results, with the older system's columns) and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_results",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("queue_seconds", sa.Float(), nullable=True),
        sa.Column("inference_seconds", sa.Float(), nullable=True),
        sa.Column("total_seconds", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("series_id", sa.String(256), nullable=True),
        sa.Column("series_length", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("series", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("dispatches", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
    )
    op.create_index("ix_inference_results_created_at", "inference_results", ["created_at"])
    op.create_index("ix_inference_results_model_created", "inference_results", ["model_name", "created_at"])
    op.create_index("ix_inference_results_status_updated", "inference_results", ["status", "updated_at"])
    op.create_index("ix_inference_results_finished_at", "inference_results", ["finished_at"])
    op.create_table(
        "submissions",
        sa.Column("idempotency_key", sa.String(128), primary_key=True),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("submissions")
    op.drop_table("inference_results")
