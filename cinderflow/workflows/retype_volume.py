"""Retype a volume: in place where its backend can change it, else by migration (contract §6).

The API has set `retyping` (the status before is kept) and reserved the new type's
`volumes_<type>`/`gigabytes_<type>`, keyed by the volume. Here:

1. **Plan** (one read): the new type, how it differs (`types_diff`), and the backend the volume
   fits under it: its own if that passes the new type's filters, else with `on-demand` the best
   other one. No backend, or a copy that `never` forbids, or snapshots (a copy cannot take them
   along) end the retype back in the previous status with a user message.
2. **In place**: types that differ in nothing the driver must copy for go to `driver.retype`;
   done, the final write commits the new type (the snapshots follow it, and so does the counted
   quota usage).
3. **Migration** (Cinder's generic, host-assisted copy, `_migrate_volume_generic`), each step
   undone in reverse if a later one fails, a reset takes over or the workflow is cancelled:
   `migration_status` `starting`; a new key if the new type is encrypted (undo: delete it); the
   destination created on the target backend under a new name (`volume-<name_id>`; undo:
   delete it); the source exported to the copy (undo: end the export); `migrating`; the copy,
   run by the destination's driver, its percentage signalled here as it grows (current
   details, the `progress` query, the volume's `migration_progress` at 3.72); the export ended.
   Then the one final write: the volume keeps its id, its data is the destination's (`host`,
   `name_id`, `provider_location`, `encryption_key_id`), new type, `migration_status`
   `success`. Only after it, the old backend object and the old key are deleted: until the
   write the source is the volume, intact, whatever happens to the copy.

**Attached** (one server): the compute copies, as Nova's swap volume does for Cinder. The
destination gets a temporary volume row (`target:<source id>`, not counted in quota, held by
the migration; undo: wait briefly for the compute's attachments to go, end the exports, remove
the row), the compute is asked to swap (`PUT /servers/{id}/os-volume_attachments/{old}`), and
the workflow waits, up to `migration_completion_timeout`, for `os-migrate_volume_completion`
(the `complete_migration` update). Success: the final write exchanges the two volumes' backend
objects and attachments (Cinder's finish_volume_migration), so the source keeps its id, its
new data and the compute's new attachment, and the update answers `save_volume_id` only once
that has been written (the compute deletes the old attachment next, which then belongs to the
target row). After the compute has let go of the old object, it and the row are removed. An
error or silence rolls back, the volume `in-use` on its old backend.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.compute import ComputeActivities
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.db.admin_metadata import MIGRATION_KEY_ID
    from cinderflow.drivers.base import VolumeRef
    from cinderflow.payloads import (
        Connection,
        FinalWrite,
        MigrationCompleted,
        MigrationCompletion,
        MigrationKey,
        MigrationState,
        MigrationTarget,
        OperationOutcome,
        RetypeCheck,
        Retyped,
        RetypePlan,
        RetypeRequest,
        SwapRequest,
        VolumeCopy,
        VolumeKey,
    )
    from cinderflow.status import MigrationStatus
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import LOST, OperationInput, OperationWorkflow

T = TypeVar("T")
MIGRATION_CONNECTOR = {"host": "cinderflow-migration", "initiator": "cinderflow-migration"}
"""The consumer the source is exported to for the copy (the destination's driver reads it)."""
END_EXPORT = "end the source's export"
NOT_SWAPPING = "Source volume not mid-migration."
"""Cinder's words for a completion nothing waits for."""
COMPUTE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
CLEANUP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=0,
)
MODEL_FIELDS = ("provider_location", "provider_id")
"""What a driver's create may report about the destination (its model update)."""
DRAIN_TIMEOUT = timedelta(seconds=120)
"""How long an undo waits for the compute to delete its attachment of the target."""


class RetypeInput(OperationInput):
    new_type_id: str
    migration_policy: str = "never"
    previous_status: str
    """available or in-use: where the volume returns whatever the outcome."""
    completion_timeout_s: float = 3600.0
    """How long an attached volume's migration waits for the compute's swap."""
    host: str | None = None
    """An administrator's os-migrate_volume: the backend to move to (the type stays)."""


@workflow.defn(name="RetypeVolume")
class RetypeVolume(OperationWorkflow):
    operation = "retype"
    admin_metadata_keys = (MIGRATION_KEY_ID,)

    @property
    def action(self) -> Code:
        return Action.MIGRATE_VOLUME if self.request.host else Action.RETYPE_VOLUME

    @workflow.init
    def __init__(self, request: RetypeInput) -> None:
        super().__init__()
        self.request = request
        self.migrating = False
        """The migration has begun: whichever way it stops, `migration_status` ends `error`."""
        self.swap_target: str | None = None
        """The target volume a compute's os-migrate_volume_completion must name (None: no
        completion is awaited)."""
        self.swap_answer: MigrationCompletion | None = None
        self.exchanged = False
        self.keep_destination = False

    @workflow.update
    async def complete_migration(self, completion: MigrationCompletion) -> MigrationCompleted:
        """The compute's answer to the swap (REST os-migrate_volume_completion calls this).
        A success is answered once the volumes have exchanged their backend objects and
        attachments, so the compute may delete its old attachment as soon as it has the
        answer. One that arrives while a reset is being checked waits for its outcome."""
        await workflow.wait_condition(lambda: not self._reset_busy)
        if self.stop_requested:
            raise ApplicationError(NOT_SWAPPING, type="NotWaiting")
        self.swap_answer = completion
        if not completion.error:  # a repeat of it waits here too
            await workflow.wait_condition(lambda: self.exchanged or self._ended)
            if not self.exchanged:
                raise ApplicationError(
                    "the migration ended before the swap could complete", type="NotWaiting"
                )
        return MigrationCompleted(save_volume_id=self.request.resource_id)

    @complete_migration.validator
    def _only_while_swapping(self, completion: MigrationCompletion) -> None:
        if completion == self.swap_answer and self.swap_target is not None:
            return  # the same answer again (a retry): it gets the first one's outcome
        if self.swap_target is None or self.swap_answer is not None or self.stop_requested:
            raise ApplicationError(NOT_SWAPPING, type="NotWaiting")
        if completion.new_volume != self.swap_target:
            raise ApplicationError(
                f"Destination {completion.new_volume} is not this migration's target "
                f"{self.swap_target}.",
                type="NotWaiting",
            )

    def reset_refusal(self) -> str | None:
        """Once the compute said it moved the guest's disk, the migration must carry that
        through: a rollback would delete the disk the guest now runs on."""
        if self.swap_answer is not None and not self.swap_answer.error:
            return (
                "the compute has moved the guest's disk to the new volume; the migration is "
                "finishing, reset again once it has ended"
            )
        return None

    @workflow.run
    async def run(self, request: RetypeInput) -> OperationOutcome:
        return await self.execute(request, self._retype(request))

    async def _retype(self, request: RetypeInput) -> OperationOutcome:
        self.report("Choosing a backend for the new type.")
        check = RetypeCheck(
            volume_id=request.resource_id,
            new_type_id=request.new_type_id,
            migration_policy=request.migration_policy,
            host=request.host,
        )
        plan = await self.step(
            lambda: common.run_control(SchedulerActivities.plan_retype, check, "plan retype")
        )
        if plan.refused or plan.host is None:
            return await self._back(plan.refused or "no backend", Detail.NO_BACKEND_AVAILABLE)
        new_type: dict[str, Any] = {"volume_type_id": plan.new_type.id}
        if request.host is None:  # a retype (os-migrate_volume keeps the type and its flag)
            new_type["multiattach"] = plan.new_type.multiattach
            if plan.diff.get("equal"):
                reason = f"retyped to {plan.new_type.name} (nothing differs)"
                return await self._done(new_type, reason)
            if plan.same_backend and not plan.diff.get("encryption"):
                retyped = await self._in_place(plan)
                if retyped.done:
                    values = {**new_type, **retyped.update}
                    return await self._done(values, f"retyped to {plan.new_type.name} in place")
            if request.migration_policy != "on-demand":
                return await self._back(
                    "Retype requires migration but is not allowed.", Detail.RETYPE_NEEDS_MIGRATION
                )
        # a migration: what os-migrate_volume asks for, or what the retype needs
        if plan.snapshots:
            return await self._back("Volume must not have snapshots.", Detail.VOLUME_HAS_SNAPSHOTS)
        if plan.attachments and (len(plan.servers) != 1 or plan.unnamed_attachments):
            return await self._back(
                "An attached volume moves by its compute's swap, for exactly one server "
                f"named by every attachment; this one has {plan.attachments} attachment(s) of "
                f"{len(plan.servers)} server(s).",
                Detail.MIGRATION_FAILED,
            )
        return await self._migrate(plan, new_type)

    async def _in_place(self, plan: RetypePlan) -> Retyped:
        """The driver's retype on the volume's backend; a failure counts as "cannot" (Cinder),
        so a copy may still do it."""
        volume = plan.volume
        assert volume.host is not None
        self.report(f"Retyping in place on `{volume.host}`.")
        retype = RetypeRequest(
            volume=volume, new_type=plan.new_type, diff=plan.diff, host=volume.host
        )
        try:
            return await self.critical(
                "the driver's retype",
                lambda: workflow.execute_activity_method(
                    DriverActivities.retype,
                    retype,
                    **common.driver(volume.host, self.request.policy, "driver retype"),
                ),
            )
        except ActivityError as error:
            workflow.logger.info("in-place retype failed, a copy may do: %s", error)
            return Retyped(done=False)

    async def _migrate(self, plan: RetypePlan, new_type: dict[str, Any]) -> OperationOutcome:
        """Each undo is registered before its step: a step that made its thing and then
        failed, or was cut after it committed, is undone too (every undo is idempotent)."""
        source, target_host = plan.volume, plan.host
        assert source.host is not None and target_host is not None
        policy = self.request.policy
        self.migrating = True
        await self._migration_status(MigrationStatus.STARTING)
        key_id: str | None = None
        if plan.new_type.encryption is not None:
            self.report("Creating the destination's encryption key.")
            new_key = MigrationKey(volume_id=source.id, new_type_id=plan.new_type.id)
            self.undo_with("delete the destination's key", self._delete_destination_key)
            key_id = await self.step(
                lambda: common.run_control(
                    KeyActivities.create_migration_key, new_key, "destination key"
                )
            )
            assert key_id is not None
        target = VolumeRef(
            id=source.id,
            name_id=str(workflow.uuid4()),
            size=source.size,
            project_id=source.project_id,
            host=target_host,
            volume_type_id=plan.new_type.id,
            extra_specs=plan.new_type.extra_specs,
            encryption=plan.new_type.encryption,
            encryption_key_id=key_id,
        )
        self.report(f"Creating the destination on `{target_host}`.")
        self.undo_with("delete the destination", lambda: self._delete_destination(target))
        try:
            update = await self.step(
                lambda: workflow.execute_activity_method(
                    DriverActivities.create_volume,
                    target,
                    **common.driver(target_host, policy, "driver create_volume (destination)"),
                )
            )
        except ActivityError as error:
            return await self._migration_failed(error)
        model = {k: v for k, v in (update or {}).items() if k in MODEL_FIELDS}
        target = target.model_copy(update=model)
        values = {
            **new_type,
            "host": target_host,
            "name_id": target.name_id,
            "provider_location": None,
            "provider_id": None,
            **model,
            "encryption_key_id": key_id,
        }
        if plan.attachments:
            return await self._swap(plan, target, values, plan.servers[0])
        export = Connection(
            attachment_id=f"migration-{target.name_id}",
            volume=source,
            connector=MIGRATION_CONNECTOR,
        )
        self.undo_with(END_EXPORT, lambda: self._end_export(export))
        try:
            connection = await self.step(
                lambda: workflow.execute_activity_method(
                    DriverActivities.initialize_connection,
                    export,
                    **common.driver(source.host, policy, "driver initialize_connection (source)"),
                )
            )
        except ActivityError as error:
            return await self._migration_failed(error)
        await self._migration_status(MigrationStatus.MIGRATING)
        self.copying = f"Copying {source.size} GiB from `{source.host}` to `{target_host}`."
        self.report(self.copying, 0)
        copy = VolumeCopy(target=target, source=source, source_connection=connection)
        try:
            await self.step(
                lambda: workflow.execute_activity_method(
                    DriverActivities.copy_volume_data,
                    copy,
                    **common.driver(target_host, policy, "driver copy_volume_data"),
                ),
                stoppable=True,
            )
        except ActivityError as error:
            return await self._migration_failed(error)
        finally:
            self.copying = ""
        self.report("Ending the source's export.", 100)
        await self.step(lambda: self._end_export(export))
        self.undone_by_step(END_EXPORT)
        done = await self._done(
            values,
            f"retyped to {plan.new_type.name} by migration to {target_host}",
            migration_status=MigrationStatus.SUCCESS,
        )
        if done.done:  # a lost write wrote nothing: the source is still the volume
            await self._remove_source(source, key_id)
        return done

    async def _swap(
        self, plan: RetypePlan, target: VolumeRef, values: dict[str, Any], server: str
    ) -> OperationOutcome:
        """The compute copies (see the module's docstring)."""
        source = plan.volume
        assert target.name_id is not None and source.host is not None
        target_id = target.name_id  # the target row's id names the destination's object
        row = MigrationTarget(source_id=source.id, target_id=target_id, values=values)
        self.undo_with("remove the migration target", lambda: self._remove_target(target))
        await self.step(
            lambda: common.run_control(
                VolumeActivities.add_migration_target, row, "add the migration target"
            )
        )
        await self._migration_status(MigrationStatus.MIGRATING)
        self.swap_target = target_id  # a compute may answer before its 202 arrives here
        swap = SwapRequest(server_id=server, old_volume_id=source.id, new_volume_id=target_id)
        try:
            await self.step(
                lambda: workflow.execute_activity_method(
                    ComputeActivities.swap_volume,
                    swap,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=COMPUTE_RETRY,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary="compute swap volume",
                )
            )
        except ActivityError as error:
            if self.swap_answer is None:
                self.swap_target = None
                return await self._migration_failed(error)
        timeout = self.request.completion_timeout_s
        since = workflow.now().strftime("%Y-%m-%d %H:%M:%S UTC")
        self.report(
            f"Waiting since {since} for the compute to move server {server}'s disk to volume "
            f"{target_id} on `{target.host}` (os-migrate_volume_completion), at most "
            f"{timeout:.0f} s."
        )
        deadline = workflow.now() + timedelta(seconds=timeout)
        try:
            await self.step(  # cut by a reset that is then refused, it waits the time left
                lambda: workflow.wait_condition(
                    lambda: self.swap_answer is not None,
                    timeout=max(deadline - workflow.now(), timedelta(milliseconds=1)),
                    timeout_summary="migration completion timeout",
                )
            )
        except TimeoutError:
            if self.swap_answer is None:
                self.swap_target = None
                return await self._back(
                    f"no completion from the compute within {timeout:.0f} s",
                    Detail.MIGRATION_FAILED,
                )
        assert self.swap_answer is not None
        if self.swap_answer.error:
            self.swap_target = None
            failed = "the compute failed to copy the volume"
            return await self._back(failed, Detail.MIGRATION_FAILED)
        await self.close()  # the guest may run on the new disk now: no reset or cancel undoes it
        attached = await self.shielded(
            common.run_control(
                VolumeActivities.target_attachments, target_id, "the compute's attachment"
            )
        )
        if server not in attached:
            self.swap_target = None
            return await self._back(
                f"the compute answered success but server {server} has no attachment of the "
                f"migration target {target_id}",
                Detail.MIGRATION_FAILED,
            )
        reason = f"retyped to {plan.new_type.name} by the compute's swap to {target.host}"
        done = await self.finish(
            FinalWrite(
                resource_id=source.id,
                values=values,
                migration_status=MigrationStatus.SUCCESS,
                exchange_with=target_id,
                exchange_server=server,
                reason=reason,
            )
        )
        self.swap_target = None
        if done.status == LOST:
            return done
        self.exchanged = True
        await self._retire_target(source, target_id, values.get("encryption_key_id"))
        return done.model_copy(update={"status": reason})

    async def _delete_destination_key(self) -> None:
        """Undo the destination's key, unless the destination is kept (see below)."""
        if self.keep_destination:
            return
        await common.run_control(
            KeyActivities.delete_migration_key, self.request.resource_id, "delete destination key"
        )

    async def _delete_destination(self, target: VolumeRef) -> None:
        """Undo the destination, unless the compute still has the target attached (then it
        may be the guest's disk now: it is left, with the row, for the operator)."""
        if self.keep_destination:
            workflow.logger.warning("destination %s kept: the compute uses it", target.name)
            return
        assert target.host is not None
        await workflow.execute_activity_method(
            DriverActivities.delete_volume,
            target,
            **common.driver(target.host, self.request.policy, "driver delete_volume (destination)"),
        )

    async def _remove_target(self, target: VolumeRef) -> None:
        """Undo the target row: let the compute end its attachments (briefly); if it has not,
        keep row and destination (the guest may be on it); else end what is left of their
        exports and remove the row."""
        assert target.name_id is not None and target.host is not None
        if await self._drain(target.name_id, DRAIN_TIMEOUT):
            self.keep_destination = True
            return
        every_export = Connection(attachment_id="migration-target", volume=target)
        self.keep_destination = True  # until the exports are ended and the row is removed
        await workflow.execute_activity_method(
            DriverActivities.terminate_connection,
            every_export,
            **common.driver(target.host, self.request.policy, "driver terminate_connection"),
        )
        removed = await common.run_control(
            VolumeActivities.remove_migration_target, target.name_id, "remove target"
        )
        self.keep_destination = not removed

    async def _retire_target(self, source: VolumeRef, target_id: str, key_id: str | None) -> None:
        """After the exchange the target row stands for the old backend object: once the
        compute has deleted its old attachment, remove both (and the old key)."""
        assert source.host is not None
        self.report("Waiting for the compute to let go of the old volume.")
        await self.shielded(
            self._drain(target_id, timedelta(seconds=self.request.completion_timeout_s))
        )
        old = Connection(attachment_id="migration-source", volume=source)
        await self.until_done(
            "ending the old exports",
            lambda: workflow.execute_activity_method(
                DriverActivities.terminate_connection,
                old,
                **self._cleanup(source.host, "driver terminate_connection (source)"),
            ),
        )
        removed = await self.until_done(
            "removing the migration target",
            lambda: common.run_control(
                VolumeActivities.remove_migration_target, target_id, "remove migration target"
            ),
        )
        if removed:
            await self._remove_source(source, key_id)

    async def _drain(self, target_id: str, timeout: timedelta) -> list[str]:
        """Wait (polling, backing off to 30 s) until the target has no attachments, or
        `timeout` has passed; the servers still attached."""
        deadline, pause = workflow.now() + timeout, timedelta(seconds=1)
        while True:
            left = await common.run_control(
                VolumeActivities.target_attachments, target_id, "target's attachments"
            )
            if not left or workflow.now() >= deadline:
                return left
            await workflow.sleep(min(pause, max(deadline - workflow.now(), timedelta(0))))
            pause = min(pause * 2, timedelta(seconds=30))

    async def _remove_source(self, source: VolumeRef, key_id: str | None) -> None:
        """After the final write: the old backend object and the old key are no one's now.
        Run through a cancel and tried until done (an orphan would be forever)."""
        assert source.host is not None
        self.report(f"Deleting the source on `{source.host}`.")
        await self.until_done(
            "deleting the source",
            lambda: workflow.execute_activity_method(
                DriverActivities.delete_volume,
                source,
                **self._cleanup(source.host, "driver delete_volume (source)"),
            ),
        )
        if source.encryption_key_id and source.encryption_key_id != key_id:
            old = VolumeKey(project_id=source.project_id, key_id=source.encryption_key_id)
            await self.until_done(
                "deleting the old key",
                lambda: common.run_control(KeyActivities.delete_key, old, "delete the old key"),
            )
        self.report("Migrated.")

    def _cleanup(self, host: str, summary: str) -> dict[str, Any]:
        """Driver options for a removal after the final write: no queue deadline (a backend
        down for a day still gets it), retried without end."""
        options = common.driver(host, self.request.policy, summary)
        options["retry_policy"] = CLEANUP_RETRY
        options["schedule_to_start_timeout"] = None
        return options

    async def _end_export(self, export: Connection) -> None:
        assert export.volume.host is not None
        await workflow.execute_activity_method(
            DriverActivities.terminate_connection,
            export,
            **common.driver(export.volume.host, self.request.policy, "driver terminate_connection"),
        )

    async def _migration_status(self, status: str) -> None:
        state = MigrationState(volume_id=self.request.resource_id, migration_status=status)
        await self.step(
            lambda: common.run_control(
                VolumeActivities.set_migration_status, state, f"migration_status {status}"
            )
        )

    async def _migration_failed(self, error: ActivityError) -> OperationOutcome:
        return await self._back(
            f"Migration failed: {common.failure_message(error)}", Detail.MIGRATION_FAILED
        )

    async def _done(
        self, values: dict[str, Any], reason: str, *, migration_status: str | None = None
    ) -> OperationOutcome:
        """The retype's commit: the new type (and where the data now is), back to the status
        before; the reservation is released as the counted usage moves with the rows."""
        outcome = await self.finish(
            FinalWrite(
                resource_id=self.request.resource_id,
                status=self.request.previous_status,
                values=values,
                migration_status=migration_status,
                reason=reason,
            )
        )
        return outcome.model_copy(update={"status": reason})

    async def _back(self, reason: str, detail: Code) -> OperationOutcome:
        """The retype did not happen: previous status and type, reservation released, undos
        run, a user message; a migration that had begun ends `error`."""
        return await self.fail(
            FinalWrite(
                resource_id=self.request.resource_id,
                status=self.request.previous_status,
                migration_status=MigrationStatus.ERROR if self.migrating else None,
                reason=reason,
                message=self.message(self.action, detail),
            )
        )

    def stopped_write(self, write: FinalWrite) -> FinalWrite:
        """A reset or cancel that stopped a migration: `migration_status` `error` unless the
        reset names one."""
        if self.migrating and write.migration_status is None:
            write.migration_status = MigrationStatus.ERROR
        return write
