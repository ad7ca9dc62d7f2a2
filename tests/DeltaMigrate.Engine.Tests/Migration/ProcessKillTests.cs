using System.Diagnostics;
using System.Net;
using System.Runtime.Versioning;
using System.Text.Json;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Tests.Qmp;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Engine.Tests.Migration;

/// <summary>
/// One half of the migration in its own pwsh process (the built module, as an admin runs it), killed
/// with SIGKILL while the proxy holds the frame of a chosen phase. The other half and the run
/// directory must then show a state the admin can act on, and never two running copies.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class ProcessKillTests : IAsyncLifetime
{
    private static readonly TimeSpan LinkTimeout = TimeSpan.FromSeconds(3);

    private readonly string _directory = Directory.CreateTempSubdirectory("dm-kill-").FullName;
    private QemuLauncher _launcher = null!;

    public Task InitializeAsync()
    {
        QemuProcess.RequireQemu();
        Assert.True(File.Exists(Path.Combine(TestVms.Root, "module/bin/DeltaMigrate.dll")),
            "The module is not built: run `dotnet pwsh ./build.ps1 build` (the test command does).");
        _launcher = new QemuLauncher(new RunDirectory(_directory));
        return Task.CompletedTask;
    }

    public Task DisposeAsync() => TestVms.RemoveAllAsync(_directory);

    [Theory]
    [InlineData("pre-copy", "Data", 30, "running", "exited")]
    [InlineData("after the last data", "End", 1, "running", "not running")]
    // The receiver died with its Loaded on the way: it never arrives, so the sender resumes its source.
    [InlineData("after Loaded", "Loaded", 1, "running", "paused")]
    // The receiver died after its Loaded arrived, before the Commit reached it: the sender is in doubt.
    [InlineData("after Commit sent", "Commit", 1, "postmigrate", "paused")]
    public async Task TheReceivingProcessKilled_LeavesNoSecondRunningCopy(string phase, string frame, int occurrence, string sourceExpected, string destinationExpected)
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var (source, destination) = await StartPairAsync(ct);
        using var receiver = StartPwsh($"Receive-KvmVM {destination.Name} -Listen 127.0.0.1:0 | ForEach-Object {{ $_ | ConvertTo-Json -Compress }}");
        var ready = JsonDocument.Parse(await ReadJsonLineAsync(receiver, ct)).RootElement;
        var endpoint = RemoteTarget.Parse(ready.GetProperty("Endpoint").GetString()!);
        var type = Enum.Parse<FrameType>(frame);
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, endpoint.Port), type, fromSender: type != FrameType.Loaded, occurrence, FaultAction.Hold);
        await using var watch = await SplitBrainWatch.StartAsync(source, destination, ct);
        _ = proxy.Fired.ContinueWith(_ => KillAndDrop(receiver, proxy), TaskScheduler.Default);

        var sent = await TestVms.EndOf(new MigrationSession(
            new MigrationRequest(source.Name, source.ControlSocket, new RemoteTarget("127.0.0.1", proxy.Port)),
            new MigrationOptions
            {
                Token = MigrationToken.Parse(ready.GetProperty("Token").GetString()!),
                LinkTimeout = LinkTimeout,
                Bandwidth = 20L << 20,
                MaxDowntime = TimeSpan.FromMilliseconds(50),
                KeepSource = true,
            }).RunAsync(ct));

        Assert.True(proxy.Fired.IsCompleted, "The phase was never reached: the case tested nothing.");
        Assert.Equal(0, await watch.StopAsync());
        var sourceState = await TestVms.StateAsync(source, ct);
        var destinationState = await TestVms.StateAsync(destination, ct);
        FaultLog.Append(phase + " (receiver killed)", CompressionMode.Delta, type, null, sent, "killed", sourceState, destinationState, 0, watch.Samples);
        Assert.Equal(sourceExpected, sourceState);
        Assert.Equal(destinationExpected, destinationExpected == "not running" && destinationState is "paused" or "exited" ? "not running" : destinationState);
        Assert.Equal(sourceExpected == "running" ? "failed" : "in doubt", sent);
    }

    [Theory]
    [InlineData("pre-copy", "Data", 30, "running", "exited", "failed")]
    [InlineData("after the last data", "End", 1, "postmigrate", "exited", "failed")]
    [InlineData("after Loaded", "Loaded", 1, "postmigrate", "paused", "in doubt")]
    public async Task TheSendingProcessKilled_LeavesNoSecondRunningCopy(string phase, string frame, int occurrence, string sourceExpected, string destinationExpected, string receiverExpected)
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var ct = limit.Token;
        var (source, destination) = await StartPairAsync(ct);
        var receiver = new ReceiveSession(destination, new IPEndPoint(IPAddress.Loopback, 0), null) { LinkTimeout = LinkTimeout };
        var ready = new TaskCompletionSource<ReceiverReady>(TaskCreationOptions.RunContinuationsAsynchronously);
        var receiving = receiver.RunAsync(ready.SetResult, null, ct);
        var shown = await ready.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        var type = Enum.Parse<FrameType>(frame);
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, RemoteTarget.Parse(shown.Endpoint).Port), type,
            fromSender: type != FrameType.Loaded, occurrence, FaultAction.Hold);
        await using var watch = await SplitBrainWatch.StartAsync(source, destination, ct);
        // The token reaches the sender through a 0600 file in the private run directory, never a command line.
        var tokenFile = Path.Combine(_directory, "token");
        using (var file = new StreamWriter(tokenFile, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
        {
            file.Write(shown.Token);
        }
        using var sender = StartPwsh($"$t = (Get-Content -Raw '{tokenFile}').Trim(); Remove-Item '{tokenFile}'; " +
            $"Move-KvmVM {source.Name} -Destination 127.0.0.1:{proxy.Port} -Token $t -KeepSource -Bandwidth 20MB -MaxDowntime 0.05");
        await proxy.Fired.WaitAsync(TimeSpan.FromSeconds(90), ct);
        KillAndDrop(sender, proxy);

        var received = await TestVms.EndOf(receiving);
        Assert.Equal(0, await watch.StopAsync());
        var sourceState = await TestVms.StateAsync(source, ct);
        var destinationState = await TestVms.StateAsync(destination, ct);
        FaultLog.Append(phase + " (sender killed)", CompressionMode.Delta, type, null, "killed", received, sourceState, destinationState, 0, watch.Samples);
        Assert.Equal((sourceExpected, destinationExpected, receiverExpected), (sourceState, destinationState, received));
    }

    /// <summary>SIGKILL: no cleanup, no last word on the tunnel; the held frame was never sent, so it is dropped.</summary>
    private static void KillAndDrop(Process process, FaultProxy proxy)
    {
        process.Kill(entireProcessTree: true);
        process.WaitForExit(30_000);
        proxy.Release(forward: false);
    }

    private Process StartPwsh(string command)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = TestVms.Root,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "pwsh", "-NoProfile", "-NonInteractive", "-Command", "-" })
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment[RunDirectory.EnvironmentVariable] = _directory;
        var process = Process.Start(start) ?? throw new InvalidOperationException("dotnet pwsh did not start");
        process.ErrorDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        // Script on standard input: nothing secret in the process list.
        process.StandardInput.WriteLine($"$ErrorActionPreference = 'Stop'; $PSStyle.OutputRendering = 'PlainText'; Import-Module '{TestVms.Root}/DeltaMigrate.psd1'");
        process.StandardInput.WriteLine(command);
        process.StandardInput.Close();
        return process;
    }

    private static async Task<string> ReadJsonLineAsync(Process process, CancellationToken ct)
    {
        var seen = new List<string>();
        while (await process.StandardOutput.ReadLineAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), ct) is { } line)
        {
            // pwsh may put terminal mode sequences in front of the first line.
            if (line.IndexOf('{') is var start and >= 0)
            {
                return line[start..];
            }

            seen.Add(line);
        }

        throw new InvalidOperationException("The receiver printed no ready object: " + string.Join(" | ", seen));
    }

    private async Task<(VmRecord Source, VmRecord Destination)> StartPairAsync(CancellationToken ct) =>
        (await TestVms.StartSourceAsync(_launcher, "src", ct), await _launcher.StartAsync(TestVms.Spec("dst") with { Incoming = true }, ct));

}
