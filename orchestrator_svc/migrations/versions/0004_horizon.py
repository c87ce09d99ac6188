"""Each job's requested forecast horizon (SubmitSeriesRequest.horizon): the worker cuts a
forecasting model's predictions to it, and a re-dispatched job must carry it again. Null: the
model's whole horizon.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inference_results", sa.Column("horizon", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("inference_results", "horizon")
