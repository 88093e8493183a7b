"""The planned executor: a stored document's selections planned once, then run without the generic walk.

graphql-core answers each of a dashboard's ~5,800 fields through the same generic steps:
a Path, a resolve info (a 16-field tuple), the argument check, the resolver through
Strawberry's wrapper, then `complete_value` unwrapping the type again (bench/README.md, W1).
A stored document is known before the request: its fields are collected once per process
(not once per request), and each selection set gets a plan saying, field by field, what
the generic walk would do. A field Strawberry reads as a plain attribute (no resolver, no
extension) is read with `getattr` and coerced at once when it is a leaf, or its selections
run at once when it is an object or a list of objects; everything else (resolvers,
`__typename`, abstract types, lists of leaves) takes graphql-core's own `execute_field`.

Same answers as the generic path: every value the fast steps do not expect (None in a
non-null field, an awaitable, an exception, an object `is_type_of` refuses, a failed
coercion) is handed to graphql-core's own step, which reads it again (attribute reads and
coercions have no side effects) and answers exactly as it always does: its errors, paths,
null propagation and error order are its own. tests/schema/test_prepared_differential.py
compares both paths byte for byte.

A library patch (tests/test_library_patches.py): it overrides graphql-core's
`Executor.execute_fields`, `collect_subfields` and `execute_collected_root_fields` and
mirrors `execute_field`'s error handling; drop it if graphql-core plans documents itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from graphql import (
    DirectiveNode,
    DocumentNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    Undefined,
    VariableNode,
    execute,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import CollectedFields, FieldDetails
from graphql.language import Visitor, visit
from graphql.language.visitor import BREAK
from graphql.pyutils import Path, gather_with_cancel

from schema.execution import GraphQLExecutionContext

FieldDetailsList = list[FieldDetails]
GroupedFieldSet = dict[str, FieldDetailsList]

GENERIC, LEAF, OBJECT, OBJECT_LIST = range(4)
# Path(prev, key, typename) without NamedTuple's generated __new__ (a frame per object of a page).
_path = tuple.__new__
# Directives whose effect on the selections is the same for every request; any other (or one
# with a variable in it: @skip(if: $x)) makes the collected fields depend on the request.
STATIC_DIRECTIVES = frozenset({"skip", "include"})


F = TypeVar("F", bound=Callable[..., Any])


def instances_only(function: F) -> F:
    """Marks an `is_type_of` classmethod that answers `isinstance(obj, cls)` and nothing else.

    The plan then checks `isinstance` itself, without a call or an info; an unmarked
    `is_type_of` (Strawberry's own, or any other) sends the field to the generic walk.
    """
    function.instances_only = True  # type: ignore[attr-defined]
    return function


class Step:
    """What the generic walk would do for one response key of one selection set, decided once."""

    __slots__ = (
        "attr",
        "coerce",
        "details",
        "is_type_of",
        "item_type",
        "kind",
        "name",
        "named",
        "nullable",
        "sub_steps",
        "type",
    )

    def __init__(self, name: str, details: FieldDetailsList, parent: GraphQLObjectType, schema: Any) -> None:
        self.name, self.details = name, details
        field_def = schema.get_field(parent, details[0].node.name.value)
        self.kind, self.attr, self.coerce, self.named = GENERIC, "", None, None
        self.is_type_of: Any = None
        self.item_type: GraphQLOutputType | None = None
        self.sub_steps: list[Step] | None = None  # an object field's selections, planned when first run
        self.type: GraphQLOutputType | None = field_def.type if field_def else None
        self.nullable = True
        if field_def is None or not getattr(field_def.resolve, "_is_default", False):
            return
        definition = field_def.extensions.get("strawberry-definition")
        if definition is None or not definition.is_basic_field or definition.default_resolver is not getattr:
            return
        wrapped = field_def.type
        self.nullable = not is_non_null_type(wrapped)
        inner = wrapped.of_type if isinstance(wrapped, GraphQLNonNull) else wrapped
        self.attr = definition.python_name
        if is_leaf_type(inner):
            self.kind, self.coerce = LEAF, inner.coerce_output_value
        elif is_object_type(inner):
            self.kind, self.named = OBJECT, inner
            self.is_type_of = _usable_is_type_of(inner)
        elif isinstance(inner, GraphQLList):
            item = inner.of_type.of_type if isinstance(inner.of_type, GraphQLNonNull) else inner.of_type
            if is_object_type(item):
                self.kind, self.named, self.item_type = OBJECT_LIST, item, inner.of_type
                self.is_type_of = _usable_is_type_of(item)
        if (self.kind in (OBJECT, OBJECT_LIST)) and self.is_type_of is False:
            self.kind = GENERIC


def _usable_is_type_of(object_type: GraphQLObjectType) -> type | bool | None:
    """None (no check), the class whose instances pass, False when only the generic walk can ask it."""
    check = object_type.is_type_of
    if check is None:
        return None
    owner = getattr(check, "__self__", None)
    return owner if getattr(check, "instances_only", False) and isinstance(owner, type) else False


class DocumentPlan:
    """The fields of one stored document, collected and planned once; shared by every request for it.

    Entries are keyed on the identity of graphql-core's field lists, which the plan itself keeps
    alive (so an id is never reused); their number is bounded by the document's selections.
    """

    def __init__(self) -> None:
        self.roots: dict[tuple[GraphQLObjectType, int], tuple[Any, GroupedFieldSet]] = {}
        self.subfields: dict[tuple[GraphQLObjectType, int], tuple[FieldDetailsList, CollectedFields]] = {}
        self.steps: dict[int, tuple[GroupedFieldSet, list[Step]]] = {}


def plannable(document: DocumentNode) -> bool:
    """Whether the document's collected fields are the same for every request (no @defer, @stream, $-directives)."""

    class Finder(Visitor):
        found = False

        def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
            variable = any(isinstance(argument.value, VariableNode) for argument in node.arguments or ())
            if node.name.value not in STATIC_DIRECTIVES or variable:
                self.found = True
                return BREAK
            return None

    finder = Finder()
    visit(document, finder)
    return not finder.found


class PlannedExecutor(GraphQLExecutionContext):
    """graphql-core's executor with the plan of a stored document (see the module's docstring)."""

    def __init__(self, *args: Any, plan: DocumentPlan, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        usable = self.abort_signal is None and (manager is None or not manager.middlewares)
        self.plan: DocumentPlan | None = plan if usable else None

    def execute_collected_root_fields(
        self, root_type: GraphQLObjectType, root_value: Any, grouped_field_set: Any, serially: bool, new: Any
    ) -> Any:
        if self.plan is not None:
            # The first request's collection stands for every request: nothing in it depends on one.
            # Keyed on the operation too: a document may hold several of one type (kept alive with it).
            key = (root_type, id(self.operation))
            grouped_field_set = self.plan.roots.setdefault(key, (self.operation, grouped_field_set))[1]
        return super().execute_collected_root_fields(root_type, root_value, grouped_field_set, serially, new)

    def collect_subfields(self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList) -> Any:
        plan = self.plan
        if plan is None:
            return super().collect_subfields(return_type, field_details_list)
        key = (return_type, id(field_details_list))
        cached = plan.subfields.get(key)
        if cached is None:
            collected = super().collect_subfields(return_type, field_details_list)
            cached = plan.subfields[key] = (field_details_list, collected)
        return cached[1]

    def _steps(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> list[Step]:
        """The selection set's steps, planned the first time it runs."""
        assert self.plan is not None
        cached = self.plan.steps.get(id(grouped_field_set))
        if cached is None:
            steps = [Step(name, details, parent_type, self.schema) for name, details in grouped_field_set.items()]
            cached = self.plan.steps[id(grouped_field_set)] = (grouped_field_set, steps)
        return cached[1]

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        if self.plan is None:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        return self._run(parent_type, source_value, path, self._steps(parent_type, grouped_field_set))

    def _sub_steps(self, step: Step) -> list[Step]:
        """The steps of an object field's selections (the same for every value and request)."""
        sub = step.sub_steps
        if sub is None:
            assert self.plan is not None
            assert step.named is not None
            grouped = self.collect_subfields(step.named, step.details).grouped_field_set
            sub = step.sub_steps = self._steps(step.named, grouped)
        return sub

    def _run(self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None, steps: list[Step]) -> Any:
        """Executor.execute_fields over the plan's steps: fast where a step allows, graphql-core's step elsewhere."""
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        parent_name = parent_type.name
        try:
            for step in steps:
                name, kind = step.name, step.kind
                if kind != GENERIC:
                    try:
                        value = getattr(source_value, step.attr)
                    except Exception:  # the generic step reads it again and reports it
                        value = Undefined
                    if value is None:
                        if step.nullable:
                            results[name] = None
                            continue
                    elif value is not Undefined and not isinstance(value, Exception) and not is_awaitable(value):
                        if kind == LEAF:
                            try:
                                coerced = step.coerce(value)  # type: ignore[misc]
                            except Exception:  # as above
                                coerced = None
                            if coerced is not None and coerced is not Undefined:
                                results[name] = coerced
                                continue
                        else:
                            completed = self._complete_planned(step, value, _path(Path, (path, name, parent_name)))
                            if completed is not Undefined:
                                results[name] = completed
                                if is_awaitable(completed):
                                    awaitable_fields.append(name)
                                continue
                result = self.execute_field(
                    parent_type, source_value, step.details, Path(path, name, parent_name), None
                )
                if result is not Undefined:
                    results[name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        return _awaited_in_place(results, awaitable_fields)

    def _complete_planned(self, step: Step, value: Any, field_path: Path) -> Any:
        """An object (or list of objects) field's value completed as `execute_field` would; Undefined: go generic."""
        named = step.named
        assert named is not None
        check = step.is_type_of
        if step.kind == OBJECT:
            if check is not None and not isinstance(value, check):
                return Undefined
        else:
            if type(value) is not list and type(value) is not tuple:
                return Undefined
            is_awaitable = self.is_awaitable
            for item in value:
                if item is None or isinstance(item, Exception) or is_awaitable(item):
                    return Undefined
                if check is not None and not isinstance(item, check):
                    return Undefined
        # Mirrors Executor.execute_field from its resolver's (non-awaitable) result on.
        try:
            sub_steps = self._sub_steps(step)
            if step.kind == OBJECT:
                completed = self._run(named, value, field_path, sub_steps)
            else:
                completed = self._complete_objects(step, named, sub_steps, value, field_path)
            if self.is_awaitable(completed):
                return _await_completed(self, completed, step.type, step.details, field_path)  # type: ignore[arg-type]
        except Exception as raw_error:  # graphql-core's own handling, as in execute_field
            self.handle_field_error(raw_error, step.type, step.details, field_path)  # type: ignore[arg-type]
            return None
        return completed

    def _complete_objects(
        self, step: Step, named: GraphQLObjectType, sub_steps: list[Step], items: Any, path: Path
    ) -> Any:
        """Executor.complete_iterable_value for checked, present, non-awaitable objects (no @stream)."""
        item_type = step.item_type
        assert item_type is not None
        is_awaitable = self.is_awaitable
        completed_results: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(items):
                item_path = _path(Path, (path, index, None))
                try:
                    completed = self._run(named, item, item_path, sub_steps)
                    if is_awaitable(completed):
                        completed_results.append(_await_completed(self, completed, item_type, step.details, item_path))
                        awaitable_indices.append(index)
                        continue
                    completed_results.append(completed)
                except Exception as raw_error:  # as complete_list_item_value
                    self.handle_field_error(raw_error, item_type, step.details, item_path)
                    completed_results.append(None)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed_results[index] for index in awaitable_indices])
            raise
        if not awaitable_indices:
            return completed_results

        return _awaited_in_place(completed_results, awaitable_indices)


async def _awaited_in_place(results: Any, keys: list[Any]) -> Any:
    """The results with their awaitables (at these keys or indices) awaited, as graphql-core gathers them."""
    if len(keys) == 1:
        results[keys[0]] = await results[keys[0]]  # one: no gather, as graphql-core skips it
    else:
        awaited = await gather_with_cancel(*(results[key] for key in keys))
        for key, value in zip(keys, awaited, strict=True):
            results[key] = value
    return results


async def _await_completed(
    executor: PlannedExecutor,
    completed: Awaitable[Any],
    return_type: GraphQLOutputType,
    field_details_list: FieldDetailsList,
    path: Path,
) -> Any:
    try:
        return await completed
    except Exception as raw_error:  # as Executor.execute_field's await_completed
        executor.handle_field_error(raw_error, return_type, field_details_list, path)
        return None


def planned_execute(plan: DocumentPlan) -> Callable[..., Any]:
    """graphql-core's `execute` as Strawberry calls it, with the planned executor of this document."""

    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["executor_class"] = PlannedExecutor
        return execute(*args, plan=plan, **kwargs)

    return run
