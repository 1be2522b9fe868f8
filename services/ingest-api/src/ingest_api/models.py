"""Response models: what callers receive (input and output models are separate)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FieldErrorOut(BaseModel):
    """One problem with one field; ``field`` is null for the whole record."""

    field: str | None = Field(examples=["amt"])
    message: str = Field(examples=["Input should be greater than or equal to 0"])
    type: str = Field(examples=["greater_than_equal"])


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:cardstream:problem:validation-error"])
    title: str = Field(examples=["Unprocessable Content"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["the transaction is not valid"])
    errors: list[FieldErrorOut] | None = None


class Receipt(BaseModel):
    """A transaction stored in the stream."""

    trans_num: str
    status: Literal["accepted"]
    shard_id: str = Field(examples=["shardId-000000000000"])
    sequence_number: str = Field(
        examples=["49655880044591231138427593385934651633311574384612507650"]
    )


class BatchResult(BaseModel):
    """The outcome of one record of a batch; ``index`` is its position in the input."""

    index: int
    trans_num: str | None
    status: Literal["accepted", "rejected", "not_accepted"]
    shard_id: str | None = None
    sequence_number: str | None = None
    errors: list[FieldErrorOut] | None = None


class BatchResponse(BaseModel):
    """One result per input record, in input order."""

    accepted: int
    rejected: int
    results: list[BatchResult]


class CardOut(BaseModel):
    """The card as it may be displayed (PCI DSS 3.4.1: at most the last four digits)."""

    masked: str = Field(examples=["****2095"])
    last4: str = Field(examples=["2095"])


class Lineage(BaseModel):
    """Where the transaction came from and where it went."""

    client_id: str
    received_at: dt.datetime
    s3_bucket: str
    s3_key: str
    loaded_at: dt.datetime


class TransactionOut(BaseModel):
    """A loaded transaction, card masked, with its lineage."""

    trans_num: str
    trans_date_trans_time: str = Field(examples=["2019-01-01 00:00:18"])
    unix_time: int
    amt: str = Field(examples=["4.97"])
    category: str
    merchant: str
    merch_lat: float
    merch_long: float
    card: CardOut
    first: str
    last: str
    gender: str
    street: str
    city: str
    state: str
    zip: str
    lat: float
    long: float
    city_pop: int
    job: str
    dob: dt.date
    is_fraud: int | None
    lineage: Lineage


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    checks: dict[str, str] | None = None
