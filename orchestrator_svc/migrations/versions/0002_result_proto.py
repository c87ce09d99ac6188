"""Results as serialised satlas.v1.JobResult (result_proto) instead of JSON.

Encoding a VAE result's 256 floats as JSON cost the orchestrator more CPU per job than the rest of
the row; the protobuf bytes cost a copy. Rows written before keep their JSON ``result``, which
reads still understand.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inference_results", sa.Column("result_proto", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("inference_results", "result_proto")
