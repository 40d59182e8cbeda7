"""Hot-path statements without the ORM's per-call query building.

Building and compiling a queryset (filters, joins, subquery annotations) costs far more CPU than
running it: on the write path it was most of a delivered write's CPU. Two tools here keep the
models as the single source of the SQL and skip that cost:

- `Prepared`: a queryset written once with named slots for its values, compiled once per
  database connection, then run again by putting each call's values in the slots' places. Rows
  come back as model instances exactly as the queryset would give them: select_related
  objects, annotations and field converters (decryption) included.
- `update_row`: one `UPDATE ... SET ... WHERE` built from the fields' columns and their own
  database preparation (JSON, encryption), for guarded updates of one row.
- `insert_row` / `insert_rows`: one `INSERT` of unsaved instances (no signals, no returned
  ids), for log rows written on every call.

A slot is found in the compiled parameters by a sample value no real call passes; compiling
fails loudly if a slot's value does not appear as a parameter (a lookup that transforms it).
A list of ids goes in one str slot as JSON through the `in_json` lookup (`pk__in_json`), which
any integer field has once this module is imported: `IN (...)` would need a parameter per id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, IntegerField, Lookup, Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.models.sql.compiler import SQLCompiler

M = TypeVar("M", bound=Model)
_SAMPLE_BASE = -(2**50)


@IntegerField.register_lookup
class InJson(Lookup):
    """`field__in_json='[3, 5]'`: the field is one of the numbers of a JSON array given as one
    parameter (so a Prepared str slot can carry a whole list of ids)."""

    lookup_name = "in_json"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: BaseDatabaseWrapper) -> tuple[str, tuple[Any, ...]]:
        return "%s", (value,)

    def as_sql(self, compiler: Any, connection: BaseDatabaseWrapper) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":  # one array, probed through the column's index
            sql = f"{lhs} = ANY(ARRAY(SELECT jsonb_array_elements_text({rhs}::jsonb)::bigint))"
        else:
            sql = f"{lhs} IN (SELECT value FROM json_each({rhs}))"  # noqa: S608 - column and placeholder only
        return sql, (*lhs_params, *rhs_params)


def _sample(kind: type, index: int) -> Any:
    """A value of `kind` that only slot `index` would ever carry."""
    if kind is int:
        return _SAMPLE_BASE - index
    if kind is str:
        return f"\u2063conduit-slot-{index}\u2063"
    raise TypeError(f"a slot takes int or str, not {kind.__name__}")  # datetimes are adapted on SQLite


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slot_at: tuple[str | None, ...]  # per parameter: the slot it carries, or None for a constant
    compiler: SQLCompiler
    model_range: tuple[int, int]
    init_list: list[str]
    populators: list[Any]
    converters: dict[int, Any]


class Prepared(Generic[M]):
    """`build(**samples)` returns the queryset; `slots` names each slot's type (int or str).
    Compiled on first use on each connection (per thread and alias)."""

    def __init__(self, build: Callable[..., QuerySet[M]], **slots: type) -> None:
        self.build, self.slots = build, slots
        self.samples = {name: _sample(kind, i) for i, (name, kind) in enumerate(slots.items())}
        self._model_class: type[M] | None = None

    def _compile(self, alias: str) -> _Compiled:
        queryset = self.build(**self.samples).using(alias)
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        by_sample = {(type(v), v): name for name, v in self.samples.items()}
        slot_at = tuple(by_sample.get((type(p), p)) for p in params)
        if missing := set(self.slots) - set(slot_at):
            raise ValueError(f"slots {sorted(missing)} are not parameters of the compiled query")
        klass_info, select = compiler.klass_info, compiler.select
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        return _Compiled(
            sql=sql,
            params=tuple(params),
            slot_at=slot_at,
            compiler=compiler,
            model_range=(start, end),
            init_list=[f[0].target.attname for f in select[start:end]],
            populators=get_related_populators(klass_info, select, alias),  # type: ignore[call-arg]
            converters=compiler.get_converters([s[0] for s in select[: compiler.col_count]]),
        )

    def _compiled(self, alias: str) -> _Compiled:
        wrapper = connections[alias]
        # keyed by the Prepared itself, not its id(): a collected one's id can be reused
        cache: dict[Prepared[Any], _Compiled] = wrapper.__dict__.setdefault("conduit_prepared", {})
        if self not in cache:
            cache[self] = self._compile(alias)
        return cache[self]

    def statement(self, **values: Any) -> tuple[str, list[Any]]:
        """The compiled SQL and its parameters with these values, to embed as a subquery (a
        queryset of `.only("id")` selects one column)."""
        sql, params, _alias, _compiled = self._bound(values)
        return sql, params

    def _bound(self, values: dict[str, Any]) -> tuple[str, list[Any], str, _Compiled]:
        if set(values) != set(self.slots):
            raise TypeError(f"expected values for {sorted(self.slots)}, got {sorted(values)}")
        alias = router.db_for_read(self._model())
        compiled = self._compiled(alias)
        slots_and_constants = zip(compiled.slot_at, compiled.params, strict=True)
        params = [values[slot] if slot else const for slot, const in slots_and_constants]
        return compiled.sql, params, alias, compiled

    def all(self, **values: Any) -> list[M]:
        sql, params, alias, compiled = self._bound(values)
        with connections[alias].cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        return self._instances(compiled, alias, rows)

    def first(self, **values: Any) -> M | None:
        found = self.all(**values)
        return found[0] if found else None

    def _model(self) -> type[M]:
        if self._model_class is None:
            self._model_class = self.build(**self.samples).model
        return self._model_class

    @staticmethod
    def _instances(compiled: _Compiled, alias: str, rows: list[Any]) -> list[M]:
        compiler = compiled.compiler
        start, end = compiled.model_range
        model = compiler.klass_info["model"]
        out = []
        converted = compiler.apply_converters(rows, compiled.converters) if compiled.converters else rows
        for row in converted:
            obj = model.from_db(alias, compiled.init_list, row[start:end])
            for populator in compiled.populators:
                populator.populate(row, obj)
            for name, position in compiler.annotation_col_map.items():
                setattr(obj, name, row[position])
            out.append(obj)
        return out


def _column(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    if not isinstance(field, Field) or not field.concrete:
        raise ValueError(f"update_row: {model.__name__}.{name} is not a column")
    return field


@cache
def _update_sql(
    alias: str, model: type[Model], names: tuple[str, ...], keys: tuple[str, ...]
) -> tuple[str, list[Field[Any, Any]], list[Field[Any, Any]]]:
    quote = connections[alias].ops.quote_name
    values, where = [_column(model, n) for n in names], [_column(model, k) for k in keys]
    sets = ", ".join(f"{quote(str(f.column))} = %s" for f in values)
    conditions = " AND ".join(f"{quote(str(f.column))} = %s" for f in where)
    return f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE {conditions}", values, where  # noqa: S608


def update_row(
    model: type[Model],
    where: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    pk_in: tuple[str, list[Any]] | None = None,
) -> int:
    """UPDATE `model`'s table SET `values` WHERE every `where` field equals its value (no NULLs
    there) and, with `pk_in` (a one-column subquery and its parameters, e.g. a Prepared
    statement), the primary key is among its rows; returns the number of rows changed. Values go
    through each field's own database preparation, as the ORM's update does; the statement's text
    is built once per shape."""
    if not where or not values:
        raise ValueError("update_row needs at least one condition and one value")
    if nulls := [name for name, value in where.items() if value is None]:
        raise ValueError(f"update_row: {nulls[0]} IS NULL is not an equality condition")
    alias = router.db_for_write(model)
    conn = connections[alias]
    sql, value_fields, where_fields = _update_sql(alias, model, tuple(values), tuple(where))
    params = [f.get_db_prep_save(v, conn) for f, v in zip(value_fields, values.values(), strict=True)]
    params += [f.get_db_prep_value(v, conn) for f, v in zip(where_fields, where.values(), strict=True)]
    if pk_in is not None:
        subquery, sub_params = pk_in
        sql += f" AND {conn.ops.quote_name(str(model._meta.pk.column))} IN ({subquery})"
        params += sub_params
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def insert_row(instance: Model) -> None:
    """INSERT `instance` as one row, its fields prepared as save() prepares them; the instance
    stays unsaved (its id is not read back) and no model signals are sent."""
    insert_rows([instance])


def insert_rows(instances: Sequence[Model]) -> None:
    """`insert_row` for several instances of one model, in one multi-row INSERT."""
    if not instances:
        return
    model = type(instances[0])
    if any(type(i) is not model for i in instances):
        raise TypeError("insert_rows takes instances of one model")
    conn = connections[router.db_for_write(model)]
    quote = conn.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.get_default() is not None]
    columns = ", ".join(quote(str(f.column)) for f in fields)
    one = f"({', '.join(['%s'] * len(fields))})"
    params = [f.get_db_prep_save(f.pre_save(i, add=True), conn) for i in instances for f in fields]
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([one] * len(instances))}"  # noqa: S608
    with conn.cursor() as cur:
        cur.execute(sql, params)
