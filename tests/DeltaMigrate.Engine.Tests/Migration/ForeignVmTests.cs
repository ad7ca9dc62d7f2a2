using System.Diagnostics;
using System.Net;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Tests.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Tests.Migration;

/// <summary>
/// VMs the module did not start: a QEMU started by hand in a folder of its own, with one -qmp
/// socket and no -S, as the source and as the destination of a migration.
/// </summary>
public sealed class ForeignVmTests : IAsyncLifetime
{
    private readonly string _runPath = Directory.CreateTempSubdirectory("dm-foreign-run-").FullName;
    private readonly string _handPath = Directory.CreateTempSubdirectory("dm-foreign-hand-").FullName;
    private readonly List<Process> _hand = [];
    private RunDirectory _runDirectory = null!;
    private QemuLauncher _launcher = null!;

    public Task InitializeAsync()
    {
        QemuProcess.RequireQemu();
        _runDirectory = new RunDirectory(_runPath);
        _launcher = new QemuLauncher(_runDirectory);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var process in _hand)
        {
            process.Kill();
            await process.WaitForExitAsync();
            process.Dispose();
        }

        await TestVms.RemoveAllAsync(_runPath);
        Directory.Delete(_handPath, recursive: true);
    }

    [Fact]
    public async Task AForeignVm_IsDescribedByItsOwnQemu_AndItsOnlyMonitorIsReleased()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var (process, socket) = await StartByHandAsync("hand", incoming: false, limit.Token);

        var record = await ForeignVm.DescribeAsync(socket, _runDirectory, NullLogger.Instance, limit.Token);

        Assert.Equal(("hand", process.Id, 128L << 20, "pc-i440fx-7.2"), (record.Name, record.Pid, record.MemoryBytes, record.Machine));
        Assert.True(record.Foreign);
        Assert.Equal((socket, socket, _runPath), (record.ControlSocket, record.QuerySocket, record.TunnelDirectory));
        Assert.NotNull(record.Spec);
        Assert.Equal((TestVms.Guest, TestVms.Spec("x").Append, Accelerator.Tcg), (record.Spec.Kernel, record.Spec.Append, record.Spec.Accelerator));
        Assert.Equal(QemuProcess.QemuPath, record.Spec.QemuPath);
        // QMP serves one client: a second one gets its greeting only if the first has let go.
        await using var again = await QmpClient.ConnectUnixAsync(socket, logger: null, TimeSpan.FromSeconds(3), limit.Token);
        Assert.Equal("running", (await again.QueryStatusAsync(limit.Token)).Status);
    }

    [Fact]
    public async Task AForeignSource_MigratesWithDeltas_ItsTunnelSocketInOurRunDirectory_RamIdentical()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var (_, socket) = await StartByHandAsync("handsrc", incoming: false, ct);
        var source = await ForeignVm.DescribeAsync(socket, _runDirectory, NullLogger.Instance, ct);
        var destination = await _launcher.StartAsync(TestVms.Spec("dst") with { Incoming = true, Paused = true }, ct);
        var before = Directory.GetFiles(_handPath).Order().ToArray();

        var result = await new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)) { TunnelDirectory = RunDirectory.ForTunnelOf(source) },
            new MigrationOptions { KeepSource = true, Bandwidth = 20L << 20 }).RunAsync(ct);

        Assert.Equal((MigrationStatus.Completed, "paused", "postmigrate"), (result.Status, result.DestinationState, result.SourceState));
        Assert.True(result.Compression?.CacheHits > 0, "pages sent again went as XBZRLE deltas");
        Assert.Equal(before, Directory.GetFiles(_handPath).Order().ToArray());
        Assert.Equal(await SaveRamAsync(socket, "src", ct), await SaveRamAsync(destination.QuerySocket, "dst", ct));
    }

    [Fact]
    public async Task AForeignDestinationStartedWithoutS_CommitsAndRuns()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "src", ct);
        var (_, socket) = await StartByHandAsync("handdst", incoming: true, ct);
        var destination = await ForeignVm.DescribeAsync(socket, _runDirectory, NullLogger.Instance, ct);
        var before = Directory.GetFiles(_handPath).Order().ToArray();

        var result = await new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new LocalVmTarget(destination)),
            new MigrationOptions { Bandwidth = 20L << 20 }).RunAsync(ct);

        Assert.Equal((MigrationStatus.Completed, "running", "exited"), (result.Status, result.DestinationState, result.SourceState));
        Assert.Equal(before, Directory.GetFiles(_handPath).Order().ToArray()); // the incoming socket was ours, in our run directory
    }

    [Fact]
    public async Task AForeignDestinationStartedWithoutS_StaysPausedWhenTheCommitNeverComes()
    {
        // QEMU without -S runs a guest as soon as it has loaded it. Losing the link right after Loaded
        // leaves the source running, so the destination must not have started by itself.
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var source = await TestVms.StartSourceAsync(_launcher, "src", ct);
        var (_, socket) = await StartByHandAsync("handwait", incoming: true, ct);
        var destination = await ForeignVm.DescribeAsync(socket, _runDirectory, NullLogger.Instance, ct);
        var token = MigrationToken.Create();
        var linkTimeout = TimeSpan.FromSeconds(3);
        var receiver = new ReceiveSession(destination, new IPEndPoint(IPAddress.Loopback, 0), token) { LinkTimeout = linkTimeout };
        var ready = new TaskCompletionSource<ReceiverReady>(TaskCreationOptions.RunContinuationsAsynchronously);
        var receiving = receiver.RunAsync(ready.SetResult, null, ct);
        var endpoint = RemoteTarget.Parse((await ready.Task.WaitAsync(TimeSpan.FromSeconds(30), ct)).Endpoint);
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, endpoint.Port), FrameType.Loaded, fromSender: false, 1, FaultAction.Cut, armed: true);

        var sent = await TestVms.EndOf(new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new RemoteTarget("127.0.0.1", proxy.Port)),
            new MigrationOptions { Compress = CompressionMode.Delta, Token = token, LinkTimeout = linkTimeout, Bandwidth = 20L << 20 }).RunAsync(ct));
        var received = await TestVms.EndOf(receiving);

        Assert.True(proxy.Fired.IsCompleted, "the link was never cut after Loaded: the case tested nothing");
        Assert.Equal(("failed", "in doubt"), (sent, received));
        Assert.Equal("running", await TestVms.StateAsync(source, ct));
        await using var qmp = await QmpClient.ConnectUnixAsync(socket, logger: null, TimeSpan.FromSeconds(5), ct);
        Assert.Equal("paused", (await qmp.QueryStatusAsync(ct)).Status);
    }

    /// <summary>A QEMU as an admin starts it: its own folder, one monitor, no -S, not daemonized, none of our files.</summary>
    private async Task<(Process Process, string Socket)> StartByHandAsync(string name, bool incoming, CancellationToken ct)
    {
        var socket = Path.Combine(_handPath, name + ".qmp");
        var serial = Path.Combine(_handPath, name + ".serial");
        var start = new ProcessStartInfo(QemuProcess.QemuPath) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var argument in new[]
        {
            "-name", name, "-machine", "pc-i440fx-7.2", "-accel", "tcg", "-m", "128M", "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", TestVms.Guest, "-append", TestVms.Spec(name).Append!, "-qmp", $"unix:{socket},server=on,wait=off",
            "-serial", $"file:{serial}",
        })
        {
            start.ArgumentList.Add(argument);
        }

        if (incoming)
        {
            start.ArgumentList.Add("-incoming");
            start.ArgumentList.Add("defer");
        }

        var process = Process.Start(start)!;
        _hand.Add(process);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(socket))
        {
            if (process.HasExited)
            {
                Assert.Fail($"QEMU '{name}' exited: {await process.StandardError.ReadToEndAsync(ct)}");
            }

            Assert.True(clock.Elapsed < QemuProcess.StartTimeout, $"QEMU '{name}' did not create {socket}.");
            await Task.Delay(20, ct);
        }

        while (!incoming && !(File.Exists(serial) && (await File.ReadAllTextAsync(serial, ct)).Contains("DMGUEST ready", StringComparison.Ordinal)))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"The guest of '{name}' did not get ready.");
            await Task.Delay(50, ct);
        }

        return (process, socket);
    }

    private async Task<string> SaveRamAsync(string socket, string name, CancellationToken ct)
    {
        var file = Path.Combine(_runPath, name + ".mem");
        await using (var qmp = await QmpClient.ConnectUnixAsync(socket, logger: null, TimeSpan.FromSeconds(5), ct))
        {
            await qmp.PmemSaveAsync(0, 128L << 20, file, TimeSpan.FromSeconds(60), ct);
        }

        var hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(await File.ReadAllBytesAsync(file, ct)));
        File.Delete(file);
        return hash;
    }
}
