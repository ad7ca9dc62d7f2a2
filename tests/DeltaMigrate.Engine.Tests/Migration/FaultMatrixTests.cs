using System.Diagnostics;
using System.Net;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Tests.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Engine.Tests.Migration;

/// <summary>
/// The fault matrix of the commit protocol: real QEMU on both ends, the real tunnel and Receive-KvmVM's
/// engine, and a proxy that cuts or blackholes the link at a chosen frame. Every case asserts that the two
/// copies never ran at once (both sampled throughout) and that the end state is the documented one.
/// Outcomes go to artifacts/fault-matrix.tsv (docs/reliability.md).
/// </summary>
public sealed class FaultMatrixTests : IAsyncLifetime
{
    private static readonly TimeSpan LinkTimeout = TimeSpan.FromSeconds(3);

    private readonly string _directory = Directory.CreateTempSubdirectory("dm-faults-").FullName;
    private RunDirectory _runDirectory = null!;
    private QemuLauncher _launcher = null!;

    public static TheoryData<string, CompressionMode, string?, bool, int, FaultAction, Outcome> Cases()
    {
        var data = new TheoryData<string, CompressionMode, string?, bool, int, FaultAction, Outcome>();
        foreach (var mode in new[] { CompressionMode.Delta, CompressionMode.Lz4 })
        {
            data.Add("pre-copy", mode, "Data", true, 30, FaultAction.Cut, Outcome.SourceRuns);
            data.Add("pre-copy", mode, "Data", true, 30, FaultAction.Blackhole, Outcome.SourceRuns);
            data.Add("stop-and-copy", mode, null, true, 1, FaultAction.Cut, Outcome.SourceRuns);
        }

        foreach (var mode in Enum.GetValues<CompressionMode>())
        {
            if (mode is CompressionMode.None or CompressionMode.Native)
            {
                // QEMU's own stream bypasses the tunnel: the control link dies while it flows.
                data.Add("pre-copy", mode, "KeepAlive", true, 2, FaultAction.Cut, Outcome.SourceRuns);
            }

            data.Add("after the last data", mode, "End", true, 1, FaultAction.Cut, Outcome.SourceRuns);
            data.Add("after Loaded", mode, "Loaded", false, 1, FaultAction.Cut, Outcome.SourceRunsDestinationInDoubt);
            data.Add("after Commit", mode, "Commit", true, 1, FaultAction.Cut, Outcome.BothPausedInDoubt);
            data.Add("after Running", mode, "Running", false, 1, FaultAction.Cut, Outcome.DestinationRunsSourceInDoubt);
        }

        data.Add("after Loaded", CompressionMode.Delta, "Loaded", false, 1, FaultAction.Blackhole, Outcome.SourceRunsDestinationInDoubt);
        data.Add("after Commit", CompressionMode.Delta, "Commit", true, 1, FaultAction.Blackhole, Outcome.BothPausedInDoubt);
        return data;
    }

    public Task InitializeAsync()
    {
        QemuProcess.RequireQemu();
        _runDirectory = new RunDirectory(_directory);
        _launcher = new QemuLauncher(_runDirectory);
        return Task.CompletedTask;
    }

    public Task DisposeAsync() => TestVms.RemoveAllAsync(_directory);

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task AFault_LeavesExactlyOneRunningCopy_OrBothPausedInDoubt(string phase, CompressionMode mode, string? frameName, bool fromSender,
        int occurrence, FaultAction action, Outcome expected)
    {
        FrameType? frame = frameName is null ? null : Enum.Parse<FrameType>(frameName);
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "src", ct);
        var destination = await _launcher.StartAsync(TestVms.Spec("dst") with { Incoming = true }, ct);
        var token = MigrationToken.Create();
        var receiver = new ReceiveSession(destination, new IPEndPoint(IPAddress.Loopback, 0), token) { LinkTimeout = LinkTimeout };
        var ready = new TaskCompletionSource<ReceiverReady>(TaskCreationOptions.RunContinuationsAsynchronously);
        var receiving = receiver.RunAsync(ready.SetResult, null, ct);
        var endpoint = RemoteTarget.Parse((await ready.Task.WaitAsync(TimeSpan.FromSeconds(30), ct)).Endpoint);

        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, endpoint.Port), frame, fromSender, occurrence, action,
            armed: phase != "stop-and-copy");
        await using var watch = await SplitBrainWatch.StartAsync(source, destination, ct);
        if (phase == "stop-and-copy")
        {
            // Strike at the first frame after the source stopped for its final copy.
            _ = watch.SourceStopped.ContinueWith(_ => proxy.Arm(), TaskScheduler.Default);
        }

        var session = new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new RemoteTarget("127.0.0.1", proxy.Port)),
            new MigrationOptions
            {
                Compress = mode,
                Token = token,
                LinkTimeout = LinkTimeout,
                Bandwidth = 20L << 20,
                MaxDowntime = TimeSpan.FromMilliseconds(50),
                KeepSource = true, // so its state can be asserted afterwards
                Timeout = TimeSpan.FromSeconds(60),
            });
        var sent = await TestVms.EndOf(session.RunAsync(ct));
        var received = await TestVms.EndOf(receiving);
        Assert.True(proxy.Fired.IsCompleted, $"The fault ({action} at {frame?.ToString() ?? "any frame"}) never struck: the case tested nothing.");

        var bothRunning = await watch.StopAsync();
        var sourceState = await TestVms.StateAsync(source, ct);
        var destinationState = await TestVms.StateAsync(destination, ct);
        FaultLog.Append(phase, mode, frame, action, sent, received, sourceState, destinationState, bothRunning, watch.Samples);

        Assert.Equal(0, bothRunning);
        var (sourceExpected, destinationExpected, senderExpected, receiverExpected) = expected switch
        {
            Outcome.SourceRuns => ("running", "exited", "failed", "failed"),
            Outcome.SourceRunsDestinationInDoubt => ("running", "paused", "failed", "in doubt"),
            Outcome.BothPausedInDoubt => ("postmigrate", "paused", "in doubt", "in doubt"),
            _ => ("postmigrate", "running", "in doubt", "completed"),
        };
        Assert.Equal((sourceExpected, destinationExpected, senderExpected, receiverExpected), (sourceState, destinationState, sent, received));
    }

    [Fact]
    public async Task NoFault_CommitsAndRunsTheDestination_RamIdentical()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "ok-src", ct);
        // -Paused: the destination commits but stays paused, so its RAM can be compared with the source's.
        var destination = await _launcher.StartAsync(TestVms.Spec("ok-dst") with { Incoming = true, Paused = true }, ct);
        await using var watch = await SplitBrainWatch.StartAsync(source, destination, ct);
        var result = await new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)),
            new MigrationOptions { KeepSource = true, LinkTimeout = LinkTimeout, Bandwidth = 20L << 20 }).RunAsync(ct);

        Assert.Equal((MigrationStatus.Completed, "paused", "postmigrate"), (result.Status, result.DestinationState, result.SourceState));
        Assert.Equal(0, await watch.StopAsync());
        Assert.Equal(await SaveRamAsync(source, ct), await SaveRamAsync(destination, ct));
    }

    [Fact]
    public async Task ADestinationThatCannotLoadTheStream_IsRemoved_AndTheSourceRunsOn()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        // The source has a device the destination lacks: QEMU on the destination refuses the stream.
        var source = await TestVms.StartSourceAsync(_launcher, "load-src", ct, ["-device", "virtio-rng-pci"]);
        var destination = await _launcher.StartAsync(TestVms.Spec("load-dst") with { Incoming = true }, ct);
        var failure = await Assert.ThrowsAsync<MigrationFailedException>(() => new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)),
            new MigrationOptions { LinkTimeout = LinkTimeout }).RunAsync(ct));

        Assert.Contains("did not load", failure.Message);
        Assert.Equal(("running", "exited"), (await TestVms.StateAsync(source, ct), await TestVms.StateAsync(destination, ct)));
        FaultLog.Append("loading", CompressionMode.Delta, null, null, "failed", "failed", "running", "exited", 0, 0);
    }

    [Fact]
    public async Task AMismatchedMachineType_IsRefusedBeforeAnyByteMoves()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "mt-src", ct);
        var destination = await _launcher.StartAsync(TestVms.Spec("mt-dst") with { Incoming = true, Machine = "pc-i440fx-7.1" }, ct);
        var refused = await Assert.ThrowsAsync<EngineException>(() => new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)),
            new MigrationOptions { LinkTimeout = LinkTimeout }).RunAsync(ct));

        Assert.Equal("MachineTypeMismatch", refused.ErrorId);
        Assert.Contains("-Machine pc-i440fx-7.2", refused.Message);
        Assert.Equal(("running", "inmigrate"), (await TestVms.StateAsync(source, ct), await TestVms.StateAsync(destination, ct)));
    }

    [Fact]
    public async Task ARemoteDestinationWithOtherMemory_IsRefusedWithItsOwnErrorId_BeforeAnyByteMoves()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "mem-src", ct);
        var destination = await _launcher.StartAsync(TestVms.Spec("mem-dst") with { Incoming = true, MemoryBytes = 256L << 20 }, ct);
        var token = MigrationToken.Create();
        var ready = new TaskCompletionSource<ReceiverReady>(TaskCreationOptions.RunContinuationsAsynchronously);
        var receiving = new ReceiveSession(destination, new IPEndPoint(IPAddress.Loopback, 0), token) { LinkTimeout = LinkTimeout }
            .RunAsync(ready.SetResult, null, ct);
        var endpoint = RemoteTarget.Parse((await ready.Task.WaitAsync(TimeSpan.FromSeconds(30), ct)).Endpoint);

        var refused = await Assert.ThrowsAsync<EngineException>(() => new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, endpoint),
            new MigrationOptions { Token = token, LinkTimeout = LinkTimeout }).RunAsync(ct));

        Assert.Equal("MemorySizeMismatch", refused.ErrorId);
        Assert.Contains("-Memory 128MB", refused.Message);
        Assert.Equal("MemorySizeMismatch", (await Assert.ThrowsAsync<EngineException>(() => receiving)).ErrorId);
        Assert.Equal(("running", "inmigrate"), (await TestVms.StateAsync(source, ct), await TestVms.StateAsync(destination, ct)));
    }

    [Fact]
    public async Task CtrlC_InTheFinalCopy_AbortsBeforeTheCommit_AndTheSourceRunsOn()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "ccs-src", ct);
        var destination = await _launcher.StartAsync(TestVms.Spec("ccs-dst") with { Incoming = true }, ct);
        await using var watch = await SplitBrainWatch.StartAsync(source, destination, ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // Ctrl-C the moment the source stops for its final copy: QEMU may still finish as completed,
        // but nothing was committed, so the destination goes and the source runs again.
        _ = watch.SourceStopped.ContinueWith(_ => stop.Cancel(), TaskScheduler.Default);
        var outcome = await TestVms.EndOf(new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)),
            new MigrationOptions { LinkTimeout = LinkTimeout, Bandwidth = 20L << 20, MaxDowntime = TimeSpan.FromMilliseconds(50) }).RunAsync(stop.Token));

        Assert.True(watch.SourceStopped.IsCompleted, "The source never reached its final copy: the case tested nothing.");
        Assert.Equal(0, await watch.StopAsync());
        Assert.Equal(("cancelled", "running", "exited"), (outcome, await TestVms.StateAsync(source, ct), await TestVms.StateAsync(destination, ct)));
        FaultLog.Append("stop-and-copy (Ctrl-C)", CompressionMode.Delta, null, null, outcome, "failed", "running", "exited", 0, watch.Samples);
    }

    [Fact]
    public async Task ADestinationStuckInInmigrate_IsDetectedAndKilled_AndTheSourceRunsOn()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "stuck-src", ct);
        var destination = await _launcher.StartAsync(TestVms.Spec("stuck-dst") with { Incoming = true }, ct);
        await using var watch = await SplitBrainWatch.StartAsync(source, destination, ct);
        var migrating = new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)),
            new MigrationOptions { LinkTimeout = LinkTimeout, Bandwidth = 2L << 20 }).RunAsync(ct);
        await watch.SourceMigrating.WaitAsync(TimeSpan.FromSeconds(30), ct);
        // The destination's QEMU hangs (SIGSTOP): it neither loads nor answers its monitor.
        using (var hang = Process.Start("kill", ["-STOP", destination.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await hang.WaitForExitAsync(ct);
        }

        var failure = await Assert.ThrowsAsync<MigrationFailedException>(() => migrating);
        // No -Timeout: the link's own deadline (TCP_USER_TIMEOUT on the unread stream, or the write deadline) notices.
        Assert.Equal(("MigrationFailed", "running"), (failure.ErrorId, failure.Result.SourceState));
        Assert.Equal(0, await watch.StopAsync());
        Assert.Equal(("running", "exited"), (await TestVms.StateAsync(source, ct), await TestVms.StateAsync(destination, ct)));
        FaultLog.Append("destination hung (SIGSTOP)", CompressionMode.Delta, null, null, "failed", "failed", "running", "exited", 0, watch.Samples);
    }

    [Fact]
    public async Task CtrlC_DuringPreCopy_RemovesTheDestination_AndTheSourceRunsOn()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "cc-src", ct);
        var destination = await _launcher.StartAsync(TestVms.Spec("cc-dst") with { Incoming = true }, ct);
        await using var watch = await SplitBrainWatch.StartAsync(source, destination, ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var running = new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)),
            new MigrationOptions { LinkTimeout = LinkTimeout, Bandwidth = 2L << 20 }).RunAsync(stop.Token);
        await watch.SourceMigrating.WaitAsync(TimeSpan.FromSeconds(30), ct);
        await stop.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        Assert.Equal(0, await watch.StopAsync());
        Assert.Equal(("running", "exited"), (await TestVms.StateAsync(source, ct), await TestVms.StateAsync(destination, ct)));
        FaultLog.Append("pre-copy (Ctrl-C)", CompressionMode.Delta, null, null, "cancelled", "failed", "running", "exited", 0, watch.Samples);
    }

    private async Task<string> SaveRamAsync(VmRecord vm, CancellationToken ct)
    {
        var file = Path.Combine(_directory, vm.Name + ".mem");
        await using (var qmp = await QmpClient.ConnectUnixAsync(vm.QuerySocket, logger: null, TimeSpan.FromSeconds(5), ct))
        {
            await qmp.PmemSaveAsync(0, vm.MemoryBytes, file, TimeSpan.FromSeconds(60), ct);
        }

        var hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(await File.ReadAllBytesAsync(file, ct)));
        File.Delete(file);
        return hash;
    }
}

/// <summary>Samples both VMs' run state through their query monitors, all through the migration.</summary>
internal sealed class SplitBrainWatch : IAsyncDisposable
{
    private readonly QmpClient _source;
    private readonly QmpClient _destination;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _sourceStopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _sourceMigrating = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task<int> _loop = Task.FromResult(0);

    private SplitBrainWatch(QmpClient source, QmpClient destination)
    {
        _source = source;
        _destination = destination;
    }

    public int Samples { get; private set; }

    /// <summary>The source's STOP event: its final copy began.</summary>
    public Task SourceStopped => _sourceStopped.Task;

    /// <summary>The source's migration is active (pre-copy).</summary>
    public Task SourceMigrating => _sourceMigrating.Task;

    public static async Task<SplitBrainWatch> StartAsync(VmRecord source, VmRecord destination, CancellationToken ct)
    {
        var watch = new SplitBrainWatch(
            await QmpClient.ConnectUnixAsync(source.QuerySocket, logger: null, TimeSpan.FromSeconds(5), ct),
            await QmpClient.ConnectUnixAsync(destination.QuerySocket, logger: null, TimeSpan.FromSeconds(5), ct));
        _ = watch._source.WaitForEventAsync("STOP", watch._stop.Token).ContinueWith(t => watch._sourceStopped.TrySetResult(), TaskScheduler.Default);
        watch._loop = Task.Run(watch.LoopAsync);
        return watch;
    }

    /// <summary>Ends sampling and lets go of both monitors; returns how many samples saw both copies running.</summary>
    public async Task<int> StopAsync()
    {
        await _stop.CancelAsync();
        var both = await _loop;
        await _source.DisposeAsync();
        await _destination!.DisposeAsync();
        return both;
    }

    private async Task<int> LoopAsync()
    {
        var both = 0;
        while (!_stop.IsCancellationRequested)
        {
            var source = await StateAsync(_source);
            var destination = await StateAsync(_destination);
            Samples++;
            if (source && destination)
            {
                both++;
            }

            try
            {
                if (!_sourceMigrating.Task.IsCompleted && (await _source.QueryMigrateAsync(_stop.Token)).Status == "active")
                {
                    _sourceMigrating.TrySetResult();
                }

                await Task.Delay(10, _stop.Token);
            }
            catch (Exception)
            {
                // stopping, or the source is gone
            }
        }

        return both;
    }

    private static async Task<bool> StateAsync(QmpClient qmp)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            return (await qmp.QueryStatusAsync(timeout.Token)).Running;
        }
        catch (Exception)
        {
            return false; // exited, or frozen in its final copy
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (Exception)
        {
            // nothing to report any more
        }

        await _source.DisposeAsync();
        await _destination.DisposeAsync();
        _stop.Dispose();
    }
}

/// <summary>One line per injected fault, for docs/reliability.md.</summary>
internal static class FaultLog
{
    private static readonly object Gate = new();

    public static void Append(string phase, CompressionMode mode, FrameType? frame, FaultAction? action, string sender, string receiver,
        string source, string destination, int bothRunning, int samples)
    {
        var dir = Path.Combine(TestVms.Root, "artifacts");
        Directory.CreateDirectory(dir);
        var line = string.Join('\t', phase, mode, frame?.ToString() ?? "-", action?.ToString() ?? "-", sender, receiver, source, destination, bothRunning, samples);
        lock (Gate)
        {
            File.AppendAllText(Path.Combine(dir, "fault-matrix.tsv"), line + "\n");
        }
    }
}
