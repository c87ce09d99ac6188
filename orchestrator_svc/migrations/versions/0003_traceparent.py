"""Each job's W3C traceparent: the trace it belongs to (satlas.v1.Job.trace_id) and the span its
later spans (worker, results) descend from. Null for jobs that were not traced.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inference_results", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("inference_results", "traceparent")
