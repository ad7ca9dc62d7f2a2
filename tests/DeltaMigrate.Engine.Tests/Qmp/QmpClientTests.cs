using System.Text.Json;
using DeltaMigrate.Engine.Qmp;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Tests.Qmp;

/// <summary>QmpClient against a scripted fake QMP server.</summary>
public sealed class QmpClientTests
{
    private static readonly TimeSpan Step = FakeQmpServer.StepTimeout;

    /// <summary>"Promptly": far below the 30 s default command timeout, so a client that only times out fails.</summary>
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Connect_reads_greeting_and_negotiates_capabilities_first()
    {
        await using var server = FakeQmpServer.StartUnix();
        Task<QmpClient> connect = QmpClient.ConnectUnixAsync(server.SocketPath!, connectTimeout: Step);
        await using FakeQmpPeer peer = await server.AcceptAsync();
        await peer.SendAsync(FakeQmpServer.Greeting);

        FakeCommand caps = await peer.ReadCommandAsync();
        Assert.Equal("qmp_capabilities", caps.Execute);
        Assert.Null(caps.Arguments);
        Assert.Equal(JsonValueKind.Number, caps.Id.ValueKind);
        Assert.False(connect.IsCompleted, "Connect must wait for the qmp_capabilities reply.");
        await peer.ReplyAsync(caps);

        await using QmpClient client = await connect.WaitAsync(Step);
        Assert.True(client.IsConnected);
        Assert.Equal(new Version(7, 2, 22), client.QemuVersion);
        Assert.Equal("Debian 1:7.2+dfsg-7+deb12u18+b3", client.Greeting.Version.Package);
        Assert.Equal(["oob"], client.Greeting.Capabilities);
        Assert.Equal("unix:" + server.SocketPath, client.Endpoint);
    }

    [Fact]
    public async Task Connect_over_tcp()
    {
        await using var server = FakeQmpServer.StartTcp();
        Task<QmpClient> connect = QmpClient.ConnectTcpAsync("127.0.0.1", server.Port, connectTimeout: Step);
        await using FakeQmpPeer peer = await server.AcceptAsync();
        await peer.SendAsync(FakeQmpServer.Greeting);
        FakeCommand caps = await peer.ReadCommandAsync();
        await peer.ReplyAsync(caps);
        await using QmpClient client = await connect.WaitAsync(Step);

        Task<VmStatus> status = client.QueryStatusAsync();
        FakeCommand cmd = await peer.ReadCommandAsync();
        Assert.Equal("query-status", cmd.Execute);
        await peer.ReplyAsync(cmd, """{"status": "prelaunch", "singlestep": false, "running": false}""");
        Assert.Equal(new VmStatus("prelaunch", false), await status.WaitAsync(Step));
        Assert.Equal($"tcp:127.0.0.1:{server.Port}", client.Endpoint);
    }

    [Fact]
    public async Task Connect_times_out_when_no_greeting_comes_and_says_why()
    {
        await using var server = FakeQmpServer.StartUnix();
        Task<QmpClient> connect = QmpClient.ConnectUnixAsync(server.SocketPath!, connectTimeout: TimeSpan.FromMilliseconds(300));
        await using FakeQmpPeer peer = await server.AcceptAsync();

        var ex = await Assert.ThrowsAsync<TimeoutException>(() => connect.WaitAsync(Step));
        Assert.Contains("one client at a time", ex.Message, StringComparison.Ordinal);
        Assert.True(await peer.ReadEndAsync(), "The client must close the socket after a failed connect.");
    }

    [Fact]
    public async Task Connect_to_missing_socket_is_a_QmpException()
    {
        string path = Path.Combine(Path.GetTempPath(), "dm-no-such-dir-" + Guid.NewGuid().ToString("N"), "qmp.sock");
        var ex = await Assert.ThrowsAsync<QmpException>(() => QmpClient.ConnectUnixAsync(path, connectTimeout: Step));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_fails_when_server_closes_before_greeting()
    {
        await using var server = FakeQmpServer.StartUnix();
        Task<QmpClient> connect = QmpClient.ConnectUnixAsync(server.SocketPath!, connectTimeout: TimeSpan.FromSeconds(30));
        await using FakeQmpPeer peer = await server.AcceptAsync();
        peer.Close();
        await Assert.ThrowsAsync<QmpConnectionClosedException>(() => connect.WaitAsync(Prompt));
    }

    [Fact]
    public async Task Connect_fails_when_capabilities_are_refused()
    {
        await using var server = FakeQmpServer.StartUnix();
        Task<QmpClient> connect = QmpClient.ConnectUnixAsync(server.SocketPath!, connectTimeout: Step);
        await using FakeQmpPeer peer = await server.AcceptAsync();
        await peer.SendAsync(FakeQmpServer.Greeting);
        FakeCommand caps = await peer.ReadCommandAsync();
        await peer.ReplyErrorAsync(caps, "CommandNotFound", "Capabilities negotiation is already complete, command ignored");

        var ex = await Assert.ThrowsAsync<QmpCommandException>(() => connect.WaitAsync(Step));
        Assert.Equal("qmp_capabilities", ex.Command);
        Assert.True(await peer.ReadEndAsync(), "The client must close the socket after a failed handshake.");
    }

    [Fact]
    public async Task Error_reply_becomes_QmpCommandException_with_class_and_description()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            Task<JsonElement> call = client.ExecuteAsync("migrate", new Dictionary<string, object?> { ["uri"] = "tcp:10.0.0.1:4444" });
            FakeCommand cmd = await peer.ReadCommandAsync();
            await peer.ReplyErrorAsync(cmd, "GenericError", "Failed to connect to '10.0.0.1:4444': Connection refused");

            var ex = await Assert.ThrowsAsync<QmpCommandException>(() => call.WaitAsync(Step));
            Assert.Equal("migrate", ex.Command);
            Assert.Equal("GenericError", ex.ErrorClass);
            Assert.Equal("Failed to connect to '10.0.0.1:4444': Connection refused", ex.Description);
            Assert.Equal("QEMU refused 'migrate': Failed to connect to '10.0.0.1:4444': Connection refused (GenericError)", ex.Message);
            Assert.IsAssignableFrom<QmpException>(ex);

            // The connection stays usable after an error.
            Task<JsonElement> next = client.ExecuteAsync("query-name");
            FakeCommand cmd2 = await peer.ReadCommandAsync();
            await peer.ReplyAsync(cmd2, """{"name": "vm1"}""");
            Assert.Equal("vm1", (await next.WaitAsync(Step)).GetProperty("name").GetString());
        }
    }

    [Fact]
    public async Task Event_arriving_before_the_reply_is_delivered_to_channel_handler_and_command()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            var handled = new List<QmpEvent>();
            client.EventReceived += (_, e) => handled.Add(e);

            Task cont = client.ContAsync();
            FakeCommand cmd = await peer.ReadCommandAsync();
            Assert.Equal("cont", cmd.Execute);
            await peer.SendEventAsync("RESUME", seconds: 1700000000, microseconds: 266717);
            await peer.ReplyAsync(cmd);
            await cont.WaitAsync(Step);

            // The reader handled the event before the reply, so both are already there when the command returns.
            Assert.True(client.Events.TryRead(out QmpEvent? evt));
            Assert.Equal("RESUME", evt.Name);
            Assert.Equal(JsonValueKind.Object, evt.Data.ValueKind);
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1700000000).AddTicks(2_667_170), evt.Timestamp);
            QmpEvent single = Assert.Single(handled);
            Assert.Same(evt, single);
        }
    }

    [Fact]
    public async Task Events_between_commands_carry_their_data_in_order()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            await peer.SendEventAsync("MIGRATION", """{"status": "setup"}""");
            await peer.SendEventAsync("MIGRATION_PASS", """{"pass": 1}""");
            await peer.SendEventAsync("MIGRATION", """{"status": "active"}""");

            var names = new List<string>();
            await foreach (QmpEvent e in client.ReadEventsAsync().WithCancellation(new CancellationTokenSource(Step).Token))
            {
                names.Add(e.Name + ":" + e.Data.GetRawText());
                if (names.Count == 3)
                {
                    break;
                }
            }

            Assert.Equal(["MIGRATION:{\"status\": \"setup\"}", "MIGRATION_PASS:{\"pass\": 1}", "MIGRATION:{\"status\": \"active\"}"], names);
        }
    }

    [Fact]
    public async Task Out_of_order_replies_to_concurrent_commands_are_matched_by_id()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            Task<JsonElement> first = client.ExecuteAsync("query-a");
            FakeCommand a = await peer.ReadCommandAsync();
            Task<JsonElement> second = client.ExecuteAsync("query-b");
            FakeCommand b = await peer.ReadCommandAsync();
            Assert.NotEqual(a.Id.GetRawText(), b.Id.GetRawText());

            await peer.ReplyAsync(b, """{"who": "b"}""");
            Assert.Equal("b", (await second.WaitAsync(Step)).GetProperty("who").GetString());
            Assert.False(first.IsCompleted, "The reply to b must not complete a.");

            await peer.ReplyAsync(a, """{"who": "a"}""");
            Assert.Equal("a", (await first.WaitAsync(Step)).GetProperty("who").GetString());
            Assert.Equal(0, client.PendingCount);
        }
    }

    [Fact]
    public async Task Many_concurrent_commands_answered_in_reverse_order_each_get_their_own_reply()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            const int Count = 40;
            Task<JsonElement>[] calls = Enumerable.Range(0, Count)
                .Select(i => Task.Run(() => client.ExecuteAsync("echo", new { n = i })))
                .ToArray();

            var received = new List<FakeCommand>();
            for (int i = 0; i < Count; i++)
            {
                received.Add(await peer.ReadCommandAsync());
            }

            received.Reverse();
            foreach (FakeCommand cmd in received)
            {
                await peer.ReplyAsync(cmd, $$"""{"n": {{cmd.Arguments!.Value.GetProperty("n").GetInt32()}}}""");
            }

            JsonElement[] results = await Task.WhenAll(calls).WaitAsync(Step);
            for (int i = 0; i < Count; i++)
            {
                Assert.Equal(i, results[i].GetProperty("n").GetInt32());
            }
        }
    }

    [Fact]
    public async Task Server_disconnect_mid_command_fails_pending_commands_promptly_and_later_calls_immediately()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            client.CommandTimeout = Timeout.InfiniteTimeSpan;
            Task<QmpEvent> waiter = client.WaitForEventAsync("SHUTDOWN");
            Task<MigrationInfo> call = client.QueryMigrateAsync();
            FakeCommand cmd = await peer.ReadCommandAsync();
            Assert.Equal("query-migrate", cmd.Execute);
            peer.Close();

            var ex = await Assert.ThrowsAsync<QmpConnectionClosedException>(() => call.WaitAsync(Prompt));
            Assert.Equal($"QMP connection to unix:{server.SocketPath} closed while waiting for 'query-migrate'", ex.Message);
            Assert.Equal("query-migrate", ex.Command);
            await client.Closed.WaitAsync(Prompt);
            Assert.False(client.IsConnected);
            await Assert.ThrowsAsync<QmpConnectionClosedException>(() => waiter.WaitAsync(Prompt));

            // The event channel completes.
            Assert.False(await client.Events.WaitToReadAsync().AsTask().WaitAsync(Prompt));

            // Later calls fail at once, without I/O.
            Task<VmStatus> later = client.QueryStatusAsync();
            Assert.True(later.IsCompleted);
            var laterEx = await Assert.ThrowsAsync<QmpConnectionClosedException>(() => later);
            Assert.Contains("query-status", laterEx.Message, StringComparison.Ordinal);
            Assert.Equal(0, client.PendingCount);
        }
    }

    [Fact]
    public async Task Timeout_names_the_command_removes_the_pending_entry_and_a_late_reply_is_ignored()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            Task<JsonElement> call = client.ExecuteAsync("query-migrate", timeout: TimeSpan.FromMilliseconds(200));
            FakeCommand cmd = await peer.ReadCommandAsync();

            var ex = await Assert.ThrowsAsync<TimeoutException>(() => call.WaitAsync(Step));
            Assert.Contains("'query-migrate'", ex.Message, StringComparison.Ordinal);
            Assert.Equal(0, client.PendingCount);

            await peer.ReplyAsync(cmd, """{"late": true}""");
            Task<JsonElement> next = client.ExecuteAsync("query-status");
            FakeCommand cmd2 = await peer.ReadCommandAsync();
            await peer.ReplyAsync(cmd2, """{"status": "running", "running": true}""");
            JsonElement result = await next.WaitAsync(Step);
            Assert.Equal("running", result.GetProperty("status").GetString());
            Assert.True(client.IsConnected);
        }
    }

    [Fact]
    public async Task Default_command_timeout_applies_when_none_is_given()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            client.CommandTimeout = TimeSpan.FromMilliseconds(150);
            Task stop = client.StopAsync();
            _ = await peer.ReadCommandAsync();
            var ex = await Assert.ThrowsAsync<TimeoutException>(() => stop.WaitAsync(Step));
            Assert.Contains("'stop'", ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Cancellation_throws_OperationCanceledException_and_removes_the_pending_entry()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            using var cts = new CancellationTokenSource();
            Task<JsonElement> call = client.ExecuteAsync("query-migrate", ct: cts.Token);
            _ = await peer.ReadCommandAsync();
            Assert.Equal(1, client.PendingCount);
            cts.Cancel();

            var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call.WaitAsync(Step));
            Assert.Equal(cts.Token, ex.CancellationToken);
            Assert.Equal(0, client.PendingCount);

            // Already cancelled: nothing is sent.
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.QueryStatusAsync(cts.Token));
            Assert.True(client.IsConnected);
        }
    }

    [Fact]
    public async Task Quit_succeeds_when_QEMU_replies_then_closes()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            Task quit = client.QuitAsync();
            FakeCommand cmd = await peer.ReadCommandAsync();
            Assert.Equal("quit", cmd.Execute);
            await peer.SendEventAsync("SHUTDOWN", """{"guest": false, "reason": "host-qmp-quit"}""");
            await peer.ReplyAsync(cmd);
            peer.Close();

            await quit.WaitAsync(Step);
            await client.Closed.WaitAsync(Prompt);
            Assert.False(client.IsConnected);
        }
    }

    [Fact]
    public async Task Quit_succeeds_when_QEMU_closes_instead_of_replying_but_other_commands_fail()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            client.CommandTimeout = Timeout.InfiniteTimeSpan;
            Task other = client.QueryStatusAsync();
            _ = await peer.ReadCommandAsync();
            Task quit = client.QuitAsync();
            FakeCommand cmd = await peer.ReadCommandAsync();
            Assert.Equal("quit", cmd.Execute);
            peer.Close();

            await quit.WaitAsync(Prompt);
            await Assert.ThrowsAsync<QmpConnectionClosedException>(() => other.WaitAsync(Prompt));
        }
    }

    [Fact]
    public async Task Dispose_fails_pending_commands_and_closes_the_socket()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (peer)
        {
            client.CommandTimeout = Timeout.InfiniteTimeSpan;
            Task quit = client.QuitAsync();
            _ = await peer.ReadCommandAsync();
            await client.DisposeAsync();

            // A quit cut short by our own dispose did not necessarily happen.
            await Assert.ThrowsAsync<QmpConnectionClosedException>(() => quit.WaitAsync(Prompt));
            Assert.True(client.Closed.IsCompleted);
            Assert.True(await peer.ReadEndAsync());
            await Assert.ThrowsAsync<QmpConnectionClosedException>(() => client.QueryStatusAsync());
            await client.DisposeAsync(); // idempotent
        }
    }

    [Fact]
    public async Task WaitForEvent_sees_only_events_arriving_after_the_call()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            // An event handled before the waiter exists: a reply that follows it proves the reader passed it.
            await peer.SendEventAsync("MIGRATION", """{"status": "setup"}""");
            Task<JsonElement> ping = client.ExecuteAsync("query-name");
            FakeCommand cmd = await peer.ReadCommandAsync();
            await peer.ReplyAsync(cmd);
            await ping.WaitAsync(Step);

            Task<QmpEvent> waiter = client.WaitForEventAsync(e => e.Name == "MIGRATION" && e.GetDataString("status") is "setup" or "completed");
            Assert.False(waiter.IsCompleted);
            await peer.SendEventAsync("STOP");
            await peer.SendEventAsync("MIGRATION", """{"status": "completed"}""");

            QmpEvent evt = await waiter.WaitAsync(Step);
            Assert.Equal("completed", evt.GetDataString("status"));
            Assert.Equal(0, client.WaiterCount);
        }
    }

    [Fact]
    public async Task WaitForEvent_cancellation_removes_the_waiter()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            using var cts = new CancellationTokenSource();
            Task<QmpEvent> waiter = client.WaitForEventAsync("RESUME", cts.Token);
            Assert.Equal(1, client.WaiterCount);
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter.WaitAsync(Step));
            Assert.Equal(0, client.WaiterCount);
        }
    }

    [Fact]
    public async Task A_throwing_event_handler_does_not_stop_the_reader()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            client.EventReceived += (_, _) => throw new InvalidOperationException("handler bug");
            Task<QmpEvent> waiter = client.WaitForEventAsync("STOP");
            await peer.SendEventAsync("RESUME");
            await peer.SendEventAsync("STOP");
            await waiter.WaitAsync(Step);
            Assert.True(client.IsConnected);
        }
    }

    [Fact]
    public async Task Arguments_are_serialized_from_dictionaries_anonymous_objects_and_JsonElements()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            using var doc = JsonDocument.Parse("""{"uri":"exec:cat"}""");
            (object? Args, string? Expected)[] cases =
            [
                (null, null),
                (new Dictionary<string, object?> { ["downtime-limit"] = 300, ["tls-creds"] = null }, """{"downtime-limit":300,"tls-creds":null}"""),
                (new { val = 4096L, size = 16, filename = "/tmp/x" }, """{"val":4096,"size":16,"filename":"/tmp/x"}"""),
                (doc.RootElement, """{"uri":"exec:cat"}"""),
            ];

            foreach ((object? args, string? expected) in cases)
            {
                Task<JsonElement> call = client.ExecuteAsync("some-command", args);
                FakeCommand cmd = await peer.ReadCommandAsync();
                Assert.Equal("some-command", cmd.Execute);
                Assert.Equal(expected, cmd.ArgumentsJson);
                await peer.ReplyAsync(cmd);
                await call.WaitAsync(Step);
            }
        }
    }

    [Fact]
    public async Task Typed_commands_send_the_QMP_names_and_arguments_QEMU_expects()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            (Func<Task> Call, string Execute, string? Args)[] cases =
            [
                (() => client.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["xbzrle"] = true, ["events"] = false }),
                    "migrate-set-capabilities", """{"capabilities":[{"capability":"xbzrle","state":true},{"capability":"events","state":false}]}"""),
                (() => client.MigrateSetParametersAsync(new Dictionary<string, object> { ["downtime-limit"] = 300, ["max-bandwidth"] = 12_500_000L, ["xbzrle-cache-size"] = 64L << 20 }),
                    "migrate-set-parameters", """{"downtime-limit":300,"max-bandwidth":12500000,"xbzrle-cache-size":67108864}"""),
                (() => client.MigrateAsync("tcp:127.0.0.1:4444"), "migrate", """{"uri":"tcp:127.0.0.1:4444"}"""),
                (() => client.MigrateIncomingAsync("tcp:0.0.0.0:4444"), "migrate-incoming", """{"uri":"tcp:0.0.0.0:4444"}"""),
                (() => client.MigrateCancelAsync(), "migrate_cancel", null),
                (() => client.StopAsync(), "stop", null),
                (() => client.ContAsync(), "cont", null),
                (() => client.PmemSaveAsync(0x100000, 4096, "/tmp/ram.bin"), "pmemsave", """{"val":1048576,"size":4096,"filename":"/tmp/ram.bin"}"""),
                (() => client.SystemPowerdownAsync(), "system_powerdown", null),
                (() => client.QueryMigrateAsync(), "query-migrate", null),
                (() => client.QueryVersionAsync(), "query-version", null),
                (() => client.QueryMemorySizeSummaryAsync(), "query-memory-size-summary", null),
                (() => client.QueryNameAsync(), "query-name", null),
                (() => client.QueryMigrateCapabilitiesAsync(), "query-migrate-capabilities", null),
                (() => client.QueryMigrateParametersAsync(), "query-migrate-parameters", null),
            ];

            foreach ((Func<Task> call, string execute, string? args) in cases)
            {
                Task task = call();
                FakeCommand cmd = await peer.ReadCommandAsync();
                Assert.Equal(execute, cmd.Execute);
                Assert.Equal(args, cmd.ArgumentsJson);
                await peer.ReplyAsync(cmd, execute == "query-migrate-capabilities" ? "[]" : "{}");
                await task.WaitAsync(Step);
            }
        }
    }

    [Fact]
    public async Task Typed_queries_parse_QEMU_replies()
    {
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync();
        await using (client)
        await using (peer)
        {
            async Task<T> Answer<T>(Task<T> call, string reply)
            {
                FakeCommand cmd = await peer.ReadCommandAsync();
                await peer.ReplyAsync(cmd, reply);
                return await call.WaitAsync(Step);
            }

            QemuVersionInfo version = await Answer(client.QueryVersionAsync(), """{"qemu": {"micro": 1, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-1~bpo12+1"}""");
            Assert.Equal(new QemuVersionInfo(new Version(10, 0, 1), "Debian 1:10.0.2+ds-1~bpo12+1"), version);

            MemorySizeSummary mem = await Answer(client.QueryMemorySizeSummaryAsync(), """{"base-memory": 67108864, "plugged-memory": 0}""");
            Assert.Equal(new MemorySizeSummary(64L << 20, 0), mem);

            Assert.Null(await Answer(client.QueryNameAsync(), "{}"));
            Assert.Equal("vm1", await Answer(client.QueryNameAsync(), """{"name": "vm1"}"""));

            IReadOnlyDictionary<string, bool> caps = await Answer(client.QueryMigrateCapabilitiesAsync(),
                """[{"state": true, "capability": "xbzrle"}, {"state": false, "capability": "events"}]""");
            Assert.True(caps["xbzrle"]);
            Assert.False(caps["events"]);

            MigrationInfo info = await Answer(client.QueryMigrateAsync(), """{"status": "cancelled"}""");
            Assert.Equal("cancelled", info.Status);
            Assert.Null(info.Ram);
            Assert.True(info.IsFinished);
        }
    }

    [Fact]
    public async Task Commands_replies_and_events_are_logged_at_debug_with_long_payloads_trimmed()
    {
        var logger = new ListLogger();
        await using var server = FakeQmpServer.StartUnix();
        var (client, peer) = await server.ConnectAsync(logger);
        await using (client)
        await using (peer)
        {
            string longName = new('x', 5000);
            Task<JsonElement> call = client.ExecuteAsync("query-name");
            FakeCommand cmd = await peer.ReadCommandAsync();
            await peer.SendEventAsync("RESUME");
            await peer.ReplyAsync(cmd, $$"""{"name": "{{longName}}"}""");
            Assert.Equal(longName, (await call.WaitAsync(Step)).GetProperty("name").GetString());

            string[] lines = logger.Snapshot();
            Assert.Contains(lines, l => l.StartsWith("Debug:", StringComparison.Ordinal) && l.Contains("-> {\"execute\":\"query-name\"", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.StartsWith("Debug:", StringComparison.Ordinal) && l.Contains("event RESUME", StringComparison.Ordinal));
            string reply = Assert.Single(lines, l => l.Contains("<- {\"return\": {\"name\": \"xxx", StringComparison.Ordinal));
            Assert.True(reply.Length < 1000, "Long payloads are trimmed in the log.");
        }
    }

    private sealed class ListLogger : ILogger
    {
        private readonly List<string> _lines = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_lines)
            {
                _lines.Add($"{logLevel}: {formatter(state, exception)}");
            }
        }

        public string[] Snapshot()
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }
}
