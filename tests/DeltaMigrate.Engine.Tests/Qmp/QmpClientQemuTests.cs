using System.Text.Json;
using System.Text.RegularExpressions;
using DeltaMigrate.Engine.Qmp;

namespace DeltaMigrate.Engine.Tests.Qmp;

/// <summary>QmpClient against the real QEMU at /usr/bin/qemu-system-x86_64 (each test starts its own).</summary>
public sealed partial class QmpClientQemuTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Greeting_and_query_version_match_qemu_dash_dash_version()
    {
        string text = await QemuProcess.VersionTextAsync();
        Match m = VersionRegex().Match(text);
        Assert.True(m.Success, $"Unexpected --version output: {text}");
        var expected = new Version(int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value), int.Parse(m.Groups[3].Value));

        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();
        Assert.Equal(expected, client.QemuVersion);

        QemuVersionInfo version = await client.QueryVersionAsync();
        Assert.Equal(expected, version.Qemu);
        Assert.Contains(version.Package, text, StringComparison.Ordinal);
        Assert.Equal(client.Greeting.Version, version);
        Assert.Contains("oob", client.Greeting.Capabilities);
    }

    [Fact]
    public async Task Status_is_prelaunch_then_cont_resumes_with_RESUME_and_stop_pauses_with_STOP()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();

        Assert.Equal(new VmStatus("prelaunch", false), await client.QueryStatusAsync());

        Task<QmpEvent> resume = client.WaitForEventAsync("RESUME");
        await client.ContAsync();
        QmpEvent resumed = await resume.WaitAsync(Bound);
        Assert.True(Math.Abs((resumed.Timestamp - DateTimeOffset.UtcNow).TotalMinutes) < 5, $"Event time {resumed.Timestamp:O} is QEMU's wall clock.");

        // QEMU 7.2 sends RESUME before the reply to cont, so it is in the channel by the time cont returns.
        Assert.True(client.Events.TryRead(out QmpEvent? first));
        Assert.Equal("RESUME", first.Name);
        Assert.Equal(new VmStatus("running", true), await client.QueryStatusAsync());

        Task<QmpEvent> stop = client.WaitForEventAsync("STOP");
        await client.StopAsync();
        await stop.WaitAsync(Bound);
        Assert.Equal(new VmStatus("paused", false), await client.QueryStatusAsync());
    }

    [Fact]
    public async Task Fresh_VM_answers_query_migrate_with_nothing_and_reports_memory_and_name()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync("-name", "dm-qmp-test");
        await using QmpClient client = await qemu.ConnectAsync();

        MigrationInfo info = await client.QueryMigrateAsync();
        Assert.Null(info.Status);
        Assert.Null(info.Ram);
        Assert.Equal("{}", info.Raw.GetRawText());

        MemorySizeSummary mem = await client.QueryMemorySizeSummaryAsync();
        Assert.Equal(64L << 20, mem.BaseMemory);
        Assert.Equal("dm-qmp-test", await client.QueryNameAsync());
    }

    [Fact]
    public async Task Migration_capabilities_and_parameters_round_trip()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();

        Assert.False((await client.QueryMigrateCapabilitiesAsync())["xbzrle"]);
        await client.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["xbzrle"] = true, ["events"] = true });
        IReadOnlyDictionary<string, bool> caps = await client.QueryMigrateCapabilitiesAsync();
        Assert.True(caps["xbzrle"]);
        Assert.True(caps["events"]);
        Assert.False(caps["auto-converge"]);

        await client.MigrateSetParametersAsync(new Dictionary<string, object>
        {
            ["downtime-limit"] = 300,
            ["max-bandwidth"] = 12_500_000L,
            ["xbzrle-cache-size"] = 4L << 20,
        });
        JsonElement p = await client.QueryMigrateParametersAsync();
        Assert.Equal(300, p.GetProperty("downtime-limit").GetInt64());
        Assert.Equal(12_500_000, p.GetProperty("max-bandwidth").GetInt64());
        Assert.Equal(4L << 20, p.GetProperty("xbzrle-cache-size").GetInt64());
    }

    [Fact]
    public async Task Unknown_command_is_CommandNotFound_and_bad_arguments_are_GenericError()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();

        var ex = await Assert.ThrowsAsync<QmpCommandException>(() => client.ExecuteAsync("no-such-command"));
        Assert.Equal("CommandNotFound", ex.ErrorClass);
        Assert.Equal("no-such-command", ex.Command);
        Assert.Contains("no-such-command", ex.Description, StringComparison.Ordinal);

        var bad = await Assert.ThrowsAsync<QmpCommandException>(() =>
            client.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["no-such-capability"] = true }));
        Assert.Equal("GenericError", bad.ErrorClass);

        // Still usable afterwards.
        Assert.Equal("prelaunch", (await client.QueryStatusAsync()).Status);
    }

    [Fact]
    public async Task Migration_to_a_second_QEMU_completes_and_query_migrate_reports_stats()
    {
        await using QemuProcess source = await QemuProcess.StartUnixAsync();
        await using QemuProcess target = await QemuProcess.StartUnixAsync("-incoming", "defer");
        await using QmpClient src = await source.ConnectAsync();
        await using QmpClient dst = await target.ConnectAsync();
        string migrationSocket = Path.Combine(target.Directory, "migrate.sock");

        Assert.Equal("inmigrate", (await dst.QueryStatusAsync()).Status);
        await dst.MigrateIncomingAsync("unix:" + migrationSocket);

        await src.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["events"] = true });
        await src.ContAsync();
        Task<QmpEvent> completed = src.WaitForEventAsync(e => e.Name == "MIGRATION" && e.GetDataString("status") is "completed" or "failed");
        await src.MigrateAsync("unix:" + migrationSocket);
        QmpEvent done = await completed.WaitAsync(Bound);
        Assert.Equal("completed", done.GetDataString("status"));

        MigrationInfo info = await src.QueryMigrateAsync();
        Assert.Equal("completed", info.Status);
        Assert.NotNull(info.TotalTimeMs);
        Assert.NotNull(info.DowntimeMs);
        Assert.True(info.Ram!.Total >= 64L << 20, $"ram.total {info.Ram.Total}");
        Assert.True(info.Ram.Transferred > 0);
        Assert.Equal(4096, info.Ram.PageSize);
        Assert.Equal(0, info.Ram.Remaining);
        Assert.Null(info.XbzrleCache);
        // QEMU sends "completed" just before it moves the run state from finish-migrate to postmigrate.
        string state = (await src.QueryStatusAsync()).Status;
        for (var deadline = DateTime.UtcNow + Bound; state == "finish-migrate" && DateTime.UtcNow < deadline; state = (await src.QueryStatusAsync()).Status)
        {
            await Task.Delay(10);
        }

        Assert.Equal("postmigrate", state);
    }

    [Fact]
    public async Task Pmemsave_writes_guest_memory_to_a_file()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();
        string file = Path.Combine(qemu.Directory, "low.bin");

        await client.PmemSaveAsync(0, 64 * 1024, file);
        Assert.Equal(64 * 1024, new FileInfo(file).Length);
    }

    [Fact]
    public async Task Killing_QEMU_while_a_command_is_pending_gives_QmpConnectionClosedException_not_a_hang()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();
        client.CommandTimeout = Timeout.InfiniteTimeSpan;

        // Frozen QEMU cannot answer, so the command is certainly pending when QEMU dies.
        await qemu.FreezeAsync();
        Task<VmStatus> pending = client.QueryStatusAsync();
        qemu.Process.Kill();

        var ex = await Assert.ThrowsAsync<QmpConnectionClosedException>(() => pending.WaitAsync(Bound));
        Assert.Contains("while waiting for 'query-status'", ex.Message, StringComparison.Ordinal);
        await client.Closed.WaitAsync(Bound);
        Assert.False(client.IsConnected);
        await Assert.ThrowsAsync<QmpConnectionClosedException>(() => client.QueryStatusAsync());
    }

    [Fact]
    public async Task A_command_right_after_QEMU_died_gives_QmpConnectionClosedException()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();
        client.CommandTimeout = Timeout.InfiniteTimeSpan;

        qemu.Process.Kill();
        await qemu.Process.WaitForExitAsync().WaitAsync(Bound);

        // Either the reader already saw the close (fails at once) or the command is pending when it does.
        await Assert.ThrowsAsync<QmpConnectionClosedException>(() => client.QueryStatusAsync().WaitAsync(Bound));
        await client.Closed.WaitAsync(Bound);
    }

    [Fact]
    public async Task Quit_ends_the_process_and_closes_the_connection()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        await using QmpClient client = await qemu.ConnectAsync();

        Task<QmpEvent> shutdown = client.WaitForEventAsync("SHUTDOWN");
        await client.QuitAsync();
        Assert.Equal("host-qmp-quit", (await shutdown.WaitAsync(Bound)).GetDataString("reason"));
        await client.Closed.WaitAsync(Bound);
        await qemu.Process.WaitForExitAsync().WaitAsync(Bound);
        Assert.Equal(0, qemu.Process.ExitCode);
        Assert.False(client.IsConnected);
    }

    [Fact]
    public async Task Tcp_monitor_works_like_the_unix_one()
    {
        await using QemuProcess qemu = await QemuProcess.StartTcpAsync();
        await using QmpClient client = await qemu.ConnectAsync();
        Assert.StartsWith("tcp:127.0.0.1:", client.Endpoint, StringComparison.Ordinal);
        Assert.Equal(new VmStatus("prelaunch", false), await client.QueryStatusAsync());

        Task<QmpEvent> resume = client.WaitForEventAsync("RESUME");
        await client.ContAsync();
        await resume.WaitAsync(Bound);

        await client.QuitAsync();
        await qemu.Process.WaitForExitAsync().WaitAsync(Bound);
    }

    [Fact]
    public async Task A_second_client_gets_no_greeting_while_the_first_is_connected()
    {
        await using QemuProcess qemu = await QemuProcess.StartUnixAsync();
        QmpClient first = await qemu.ConnectAsync();

        var ex = await Assert.ThrowsAsync<TimeoutException>(() => qemu.ConnectAsync(TimeSpan.FromMilliseconds(500)));
        Assert.Contains("one client at a time", ex.Message, StringComparison.Ordinal);

        await first.DisposeAsync();
        await using QmpClient second = await qemu.ConnectAsync();
        Assert.Equal("prelaunch", (await second.QueryStatusAsync()).Status);
    }

    [GeneratedRegex(@"version (\d+)\.(\d+)\.(\d+)")]
    private static partial Regex VersionRegex();
}
