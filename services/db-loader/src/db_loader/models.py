"""The OLTP model as SQLModel tables: the reference the Alembic migrations are checked against.

Every attribute sits with the key it depends on in the source data (docs/data-model.md):
``city`` holds the population of a city, ``zip_area`` the coordinates of a ZIP code,
``address`` a street in a ZIP area, ``customer`` the cardholder's personal facts, ``card``
the token of a PAN, and ``transaction`` everything that is a fact of one purchase, including
the fraud label and the merchant's coordinates. Dimension keys are 128-bit hashes of their
natural key (see :mod:`db_loader.rows`), so every loader computes the same id for the same
facts without a round trip, and a key is never reused for different facts.

The transaction table is range-partitioned by month, which SQLModel cannot declare; the
migration creates it with ``PARTITION BY RANGE`` and the schema test compares both.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

# Every table, view and function lives in this schema of the `cardstream` database.
SCHEMA: Final = "cardstream"


def _fk(target: str) -> str:
    return f"{SCHEMA}.{target}"


class City(SQLModel, table=True):
    """A city and its population (``city_pop`` depends on the city, not on the customer)."""

    __tablename__ = "city"
    __table_args__ = {"schema": SCHEMA}

    city_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    city: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(
        sa_column=Column(
            Text, CheckConstraint("state ~ '^[A-Z]{2}$'", name="city_state_code"), nullable=False
        )
    )
    city_pop: int = Field(sa_column=Column(Integer, nullable=False))


class ZipArea(SQLModel, table=True):
    """A ZIP code as sent (digits, not re-padded), its city and its coordinates."""

    __tablename__ = "zip_area"
    __table_args__ = {"schema": SCHEMA}

    zip_area_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    zip: str = Field(
        sa_column=Column(
            Text,
            CheckConstraint("zip ~ '^[0-9]{1,10}$'", name="zip_area_zip_digits"),
            nullable=False,
        )
    )
    city_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey(_fk("city.city_id")), nullable=False)
    )
    lat: float = Field(sa_column=Column(Double, nullable=False))
    long: float = Field(sa_column=Column(Double, nullable=False))


class Address(SQLModel, table=True):
    """A street address inside a ZIP area."""

    __tablename__ = "address"
    __table_args__ = {"schema": SCHEMA}

    address_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    street: str = Field(sa_column=Column(Text, nullable=False))
    zip_area_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey(_fk("zip_area.zip_area_id")), nullable=False
        )
    )


class Customer(SQLModel, table=True):
    """A cardholder's personal facts as of a transaction (a card is not a customer)."""

    __tablename__ = "customer"
    __table_args__ = {"schema": SCHEMA}

    customer_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    first: str = Field(sa_column=Column(Text, nullable=False))
    last: str = Field(sa_column=Column(Text, nullable=False))
    gender: str = Field(sa_column=Column(Text, nullable=False))
    dob: dt.date = Field(sa_column=Column(Date, nullable=False))
    job: str = Field(sa_column=Column(Text, nullable=False))
    address_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey(_fk("address.address_id")), nullable=False)
    )


class Card(SQLModel, table=True):
    """A card, known only by its keyed token, the last four digits and the key version."""

    __tablename__ = "card"
    __table_args__ = {"schema": SCHEMA}

    card_token: str = Field(
        sa_column=Column(
            Text,
            CheckConstraint("card_token ~ '^[0-9a-f]{64}$'", name="card_token_hex"),
            primary_key=True,
        )
    )
    card_last4: str = Field(
        sa_column=Column(
            Text,
            CheckConstraint("card_last4 ~ '^[0-9]{4}$'", name="card_last4_digits"),
            nullable=False,
        )
    )
    card_key_version: str = Field(sa_column=Column(Text, nullable=False))


class Merchant(SQLModel, table=True):
    """A merchant by name; its coordinates vary per transaction and live there."""

    __tablename__ = "merchant"
    __table_args__ = {"schema": SCHEMA}

    merchant_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    merchant: str = Field(sa_column=Column(Text, nullable=False, unique=True))


class Category(SQLModel, table=True):
    """A merchant category code as sent (``misc_net``, ``grocery_pos`` ...)."""

    __tablename__ = "category"
    __table_args__ = {"schema": SCHEMA}

    category: str = Field(sa_column=Column(Text, primary_key=True))


class ObjectLedger(SQLModel, table=True):
    """One row per loaded source object; its presence makes a reload a no-op."""

    __tablename__ = "object_ledger"
    __table_args__ = (
        UniqueConstraint("bucket", "key", "etag", name="object_ledger_object"),
        {"schema": SCHEMA},
    )

    object_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    bucket: str = Field(sa_column=Column(Text, nullable=False))
    key: str = Field(sa_column=Column(Text, nullable=False))
    etag: str = Field(sa_column=Column(Text, nullable=False))
    size_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    event_time: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    row_count: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    inserted_count: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    duplicate_count: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    relabelled_count: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    quarantined_count: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    loaded_at: dt.datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default="now()")
    )


class QuarantinedRow(SQLModel, table=True):
    """A source row that could not be loaded, with its reasons and no card number."""

    __tablename__ = "quarantined_row"
    __table_args__ = (
        Index("quarantined_row_object", "object_id"),
        {"schema": SCHEMA},
    )

    quarantine_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    object_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey(_fk("object_ledger.object_id")), nullable=False)
    )
    line_number: int = Field(sa_column=Column(Integer, nullable=False))
    reasons: list[dict[str, str | None]] = Field(sa_column=Column(JSONB, nullable=False))
    row_masked: dict[str, object] | None = Field(default=None, sa_column=Column(JSONB))
    raw_masked: str | None = Field(default=None, sa_column=Column(Text))
    quarantined_at: dt.datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default="now()")
    )


class TransactionKey(SQLModel, table=True):
    """The registry that makes ``trans_num`` unique across all monthly partitions.

    A partitioned table's primary key must contain the partition key, so the partitioned
    table alone would accept the same ``trans_num`` in two months.
    """

    __tablename__ = "transaction_key"
    __table_args__ = {"schema": SCHEMA}

    trans_num: str = Field(sa_column=Column(Text, primary_key=True))
    trans_date_trans_time: dt.datetime = Field(
        sa_column=Column(DateTime(timezone=False), nullable=False)
    )


class Transaction(SQLModel, table=True):
    """One purchase: its facts, its label, its dimensions and its ingest lineage.

    Its references carry no FOREIGN KEY constraints (row-by-row checks cost 2.8 times the
    insert time); the migration's view ``fact_reference_violation`` lists any that break."""

    __tablename__ = "transaction"
    __table_args__ = (
        CheckConstraint("is_fraud IN (0, 1)", name="transaction_is_fraud_label"),
        CheckConstraint("amt >= 0", name="transaction_amt_non_negative"),
        Index("transaction_card_time", "card_token", "trans_date_trans_time"),
        Index("transaction_time", "trans_date_trans_time", postgresql_using="brin"),
        {"schema": SCHEMA, "postgresql_partition_by": "RANGE (trans_date_trans_time)"},
    )

    trans_num: str = Field(sa_column=Column(Text, primary_key=True))
    trans_date_trans_time: dt.datetime = Field(
        sa_column=Column(DateTime(timezone=False), primary_key=True)
    )
    unix_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    amt: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    category: str = Field(sa_column=Column(Text, nullable=False))
    merchant_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    merch_lat: float = Field(sa_column=Column(Double, nullable=False))
    merch_long: float = Field(sa_column=Column(Double, nullable=False))
    card_token: str = Field(sa_column=Column(Text, nullable=False))
    customer_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    is_fraud: int | None = Field(default=None, sa_column=Column(SmallInteger))
    labelled_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    ingest_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    client_id: str = Field(sa_column=Column(Text, nullable=False))
    received_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    object_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    loaded_at: dt.datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default="now()")
    )
