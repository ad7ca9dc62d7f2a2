using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using DeltaMigrate.Engine.Logging;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Qmp;

/// <summary>
/// An asynchronous client for one QEMU Machine Protocol (QMP) monitor connection.
/// </summary>
/// <remarks>
/// <para>One background loop reads the socket: replies are matched to commands by the <c>id</c> the client
/// attaches, events go to <see cref="Events"/>, to <see cref="EventReceived"/> and to
/// <see cref="WaitForEventAsync(Func{QmpEvent, bool}, CancellationToken)"/> waiters. Commands may be issued
/// concurrently; writes are serialised.</para>
/// <para>A QEMU <c>-qmp unix:...,server=on</c> socket serves one client at a time: a second client's connect
/// succeeds but QEMU sends no greeting until the first client leaves, so share one <see cref="QmpClient"/>
/// (or give the VM a second monitor) rather than opening another connection while one is open.</para>
/// </remarks>
public sealed class QmpClient : IAsyncDisposable
{
    /// <summary>Default per-command reply timeout.</summary>
    public static readonly TimeSpan DefaultCommandTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Default bound on connecting plus greeting plus capabilities negotiation.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(10);

    private const int MaxLoggedChars = 512;

    private readonly Stream _stream;
    private readonly ILogger _logger;
    private readonly QmpLineReader _lineReader;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly object _gate = new();
    private readonly Dictionary<long, PendingCommand> _pending = [];
    private readonly List<EventWaiter> _waiters = [];
    private readonly Channel<QmpEvent> _events = Channel.CreateUnbounded<QmpEvent>(
        new UnboundedChannelOptions { SingleWriter = true, SingleReader = false, AllowSynchronousContinuations = false });

    private readonly TaskCompletionSource<QmpGreeting> _greeting = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _readerCts = new();
    private Task _readerTask = Task.CompletedTask;
    private long _nextId;
    private bool _isClosed;
    private bool _disposed;
    private Exception? _closeReason;

    private QmpClient(Stream stream, string endpoint, ILogger? logger)
    {
        _stream = stream;
        Endpoint = endpoint;
        _logger = logger ?? NullLogger.Instance;
        _lineReader = new QmpLineReader(stream);
    }

    /// <summary>Raised on the reader loop for every event, in arrival order. Keep handlers short; exceptions are logged and swallowed.</summary>
    public event EventHandler<QmpEvent>? EventReceived;

    /// <summary>Where the client is connected, e.g. <c>unix:/tmp/vm/qmp.sock</c> or <c>tcp:127.0.0.1:4444</c>.</summary>
    public string Endpoint { get; }

    /// <summary>The greeting QEMU sent on connect.</summary>
    public QmpGreeting Greeting { get; private set; } = null!;

    /// <summary>QEMU's version from the greeting.</summary>
    public Version QemuVersion => Greeting.Version.Qemu;

    /// <summary>
    /// Every event, in arrival order. Unbounded, so the reader never blocks on it; read it or ignore it
    /// (a migration produces a handful of events). Completes when the connection closes.
    /// </summary>
    public ChannelReader<QmpEvent> Events => _events.Reader;

    /// <summary>Completes (never faults) when the connection has closed for any reason.</summary>
    public Task Closed => _closed.Task;

    /// <summary>False once the connection closed or the client was disposed.</summary>
    public bool IsConnected
    {
        get
        {
            lock (_gate)
            {
                return !_isClosed;
            }
        }
    }

    /// <summary>Why the connection closed: null while open or on a clean end of stream.</summary>
    public Exception? CloseReason
    {
        get
        {
            lock (_gate)
            {
                return _closeReason;
            }
        }
    }

    /// <summary>The QEMU process behind a unix socket (the kernel's SO_PEERCRED), for a VM we did not start; null over TCP.</summary>
    public int? PeerProcessId { get; private set; }

    /// <summary>Reply timeout for commands issued without an explicit timeout.</summary>
    public TimeSpan CommandTimeout { get; set; } = DefaultCommandTimeout;

    internal int PendingCount
    {
        get
        {
            lock (_gate)
            {
                return _pending.Count;
            }
        }
    }

    internal int WaiterCount
    {
        get
        {
            lock (_gate)
            {
                return _waiters.Count;
            }
        }
    }

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public static Task<QmpClient> ConnectUnixAsync(string socketPath, IEngineLogSink log, TimeSpan? connectTimeout = null, CancellationToken ct = default) =>
        ConnectUnixAsync(socketPath, SinkLogger.From(log), connectTimeout, ct);

    /// <summary>Connects to a QMP unix socket, reads the greeting and negotiates capabilities.</summary>
    /// <exception cref="TimeoutException">No greeting within <paramref name="connectTimeout"/> (often: another client holds the monitor).</exception>
    /// <exception cref="QmpException">The socket could not be reached or the handshake failed.</exception>
    public static async Task<QmpClient> ConnectUnixAsync(string socketPath, ILogger? logger = null, TimeSpan? connectTimeout = null, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        string endpoint = "unix:" + socketPath;
        TimeSpan timeout = connectTimeout ?? DefaultConnectTimeout;
        var started = DateTime.UtcNow;
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await ConnectSocketAsync(socket, new UnixDomainSocketEndPoint(socketPath), endpoint, timeout, ct).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var peer = Vm.UnixFile.PeerProcessId(socket);
        var client = await ConnectAsync(new NetworkStream(socket, ownsSocket: true), endpoint, logger, Remaining(timeout, started), ct).ConfigureAwait(false);
        client.PeerProcessId = peer;
        return client;
    }

    /// <summary>Connects to a QMP TCP socket (<c>-qmp tcp:HOST:PORT,server=on</c>), reads the greeting and negotiates capabilities.</summary>
    /// <exception cref="TimeoutException">No greeting within <paramref name="connectTimeout"/> (often: another client holds the monitor).</exception>
    /// <exception cref="QmpException">The socket could not be reached or the handshake failed.</exception>
    public static async Task<QmpClient> ConnectTcpAsync(string host, int port, ILogger? logger = null, TimeSpan? connectTimeout = null, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        string endpoint = $"tcp:{host}:{port}";
        TimeSpan timeout = connectTimeout ?? DefaultConnectTimeout;
        var started = DateTime.UtcNow;
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await ConnectSocketAsync(socket, IPAddress.TryParse(host, out IPAddress? ip) ? new IPEndPoint(ip, port) : new DnsEndPoint(host, port), endpoint, timeout, ct).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return await ConnectAsync(new NetworkStream(socket, ownsSocket: true), endpoint, logger, Remaining(timeout, started), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs the QMP handshake over an already connected stream, which the client then owns.
    /// </summary>
    internal static async Task<QmpClient> ConnectAsync(Stream stream, string endpoint, ILogger? logger, TimeSpan? connectTimeout, CancellationToken ct)
    {
        var client = new QmpClient(stream, endpoint, logger);
        client.StartReader();
        TimeSpan timeout = connectTimeout ?? DefaultConnectTimeout;
        try
        {
            using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeoutCts.CancelAfter(timeout);
            Task<QmpGreeting> greetingTask = client._greeting.Task;
            try
            {
                client.Greeting = await greetingTask.WaitAsync(timeoutCts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException(
                    $"QMP at {endpoint} sent no greeting within {timeout.TotalSeconds:0.###} s. " +
                    "A QMP socket serves one client at a time: is another client (a running migration, another shell) connected to it?");
            }

            client._logger.LogDebug("QMP {Endpoint}: greeting from QEMU {Version} ({Package}), capabilities [{Capabilities}]",
                endpoint, client.Greeting.Version.Qemu, client.Greeting.Version.Package, string.Join(", ", client.Greeting.Capabilities));

            await client.ExecuteAsync("qmp_capabilities", null, timeout, ct).ConfigureAwait(false);
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Sends a command and returns its <c>return</c> member (a clone, safe to keep).
    /// </summary>
    /// <param name="command">QMP command name, e.g. <c>query-migrate</c>.</param>
    /// <param name="arguments">Null, a <see cref="JsonElement"/> object, an <c>IDictionary&lt;string, object?&gt;</c>, or any object System.Text.Json serialises to a JSON object (anonymous types work).</param>
    /// <param name="timeout">Reply timeout; <see cref="CommandTimeout"/> when null; <see cref="Timeout.InfiniteTimeSpan"/> to wait forever.</param>
    /// <param name="ct">Cancels the wait (the command may still run in QEMU).</param>
    /// <exception cref="QmpCommandException">QEMU answered with an error.</exception>
    /// <exception cref="QmpConnectionClosedException">The connection is closed or closed before the reply.</exception>
    /// <exception cref="TimeoutException">No reply within the timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled.</exception>
    public async Task<JsonElement> ExecuteAsync(string command, object? arguments = null, TimeSpan? timeout = null, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(command);
        ct.ThrowIfCancellationRequested();
        TimeSpan effectiveTimeout = timeout ?? CommandTimeout;
        if (effectiveTimeout <= TimeSpan.Zero && effectiveTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), effectiveTimeout, "The timeout must be positive or Timeout.InfiniteTimeSpan.");
        }

        long id = Interlocked.Increment(ref _nextId);
        byte[] message = Serialize(command, arguments, id);
        var pending = new PendingCommand(command);

        lock (_gate)
        {
            if (_isClosed)
            {
                throw new QmpConnectionClosedException(Endpoint, command, wasPending: false, _closeReason);
            }

            _pending.Add(id, pending);
        }

        using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (effectiveTimeout != Timeout.InfiniteTimeSpan)
        {
            timeoutCts.CancelAfter(effectiveTimeout);
        }

        try
        {
            if (_logger.IsEnabled(LogLevel.Debug))
            {
                _logger.LogDebug("QMP {Endpoint} -> {Message}", Endpoint, Trim(Encoding.UTF8.GetString(message, 0, message.Length - 1)));
            }

            await SendAsync(message, command, timeoutCts.Token).ConfigureAwait(false);
            return await pending.Completion.Task.WaitAsync(timeoutCts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (ct.IsCancellationRequested && ex.CancellationToken != ct)
        {
            throw new OperationCanceledException($"Waiting for the reply to '{command}' was cancelled.", ex, ct);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested && timeoutCts.IsCancellationRequested)
        {
            throw new TimeoutException($"QEMU did not answer '{command}' on {Endpoint} within {effectiveTimeout.TotalSeconds:0.###} s.");
        }
        finally
        {
            lock (_gate)
            {
                _pending.Remove(id);
            }
        }
    }

    /// <summary>
    /// Waits for the first event that arrives after this call and satisfies <paramref name="match"/>.
    /// The waiter is registered before this method returns, so call it before issuing the command that causes the event
    /// (QEMU sends e.g. <c>RESUME</c> before the reply to <c>cont</c>).
    /// </summary>
    /// <exception cref="QmpConnectionClosedException">The connection closed before a matching event.</exception>
    public Task<QmpEvent> WaitForEventAsync(Func<QmpEvent, bool> match, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(match);
        if (ct.IsCancellationRequested)
        {
            return Task.FromCanceled<QmpEvent>(ct);
        }

        var waiter = new EventWaiter(match);
        lock (_gate)
        {
            if (_isClosed)
            {
                return Task.FromException<QmpEvent>(new QmpConnectionClosedException(Endpoint, null, wasPending: false, _closeReason));
            }

            _waiters.Add(waiter);
        }

        if (ct.CanBeCanceled)
        {
            waiter.Registration = ct.Register(() =>
            {
                lock (_gate)
                {
                    _waiters.Remove(waiter);
                }

                waiter.Completion.TrySetCanceled(ct);
            });
            if (waiter.Completion.Task.IsCompleted)
            {
                waiter.Registration.Dispose(); // Completed before the registration was stored.
            }
        }

        return waiter.Completion.Task;
    }

    /// <summary>Waits for the next event named <paramref name="eventName"/> (see <see cref="WaitForEventAsync(Func{QmpEvent, bool}, CancellationToken)"/>).</summary>
    public Task<QmpEvent> WaitForEventAsync(string eventName, CancellationToken ct = default) =>
        WaitForEventAsync(e => string.Equals(e.Name, eventName, StringComparison.Ordinal), ct);

    /// <summary>All events as an async stream (the same items as <see cref="Events"/>; each event goes to one reader).</summary>
    public IAsyncEnumerable<QmpEvent> ReadEventsAsync(CancellationToken ct = default) => _events.Reader.ReadAllAsync(ct);

    /// <summary><c>query-version</c>.</summary>
    public async Task<QemuVersionInfo> QueryVersionAsync(CancellationToken ct = default) =>
        QemuVersionInfo.FromJson(await ExecuteAsync("query-version", null, null, ct).ConfigureAwait(false));

    /// <summary><c>query-status</c>.</summary>
    public async Task<VmStatus> QueryStatusAsync(CancellationToken ct = default) =>
        VmStatus.FromJson(await ExecuteAsync("query-status", null, null, ct).ConfigureAwait(false));

    /// <summary><c>query-name</c>: the <c>-name</c> of the VM, or null when it has none.</summary>
    public async Task<string?> QueryNameAsync(CancellationToken ct = default) =>
        QmpJson.GetString(await ExecuteAsync("query-name", null, null, ct).ConfigureAwait(false), "name");

    /// <summary><c>query-memory-size-summary</c>.</summary>
    public async Task<MemorySizeSummary> QueryMemorySizeSummaryAsync(CancellationToken ct = default) =>
        MemorySizeSummary.FromJson(await ExecuteAsync("query-memory-size-summary", null, null, ct).ConfigureAwait(false));

    /// <summary><c>query-migrate</c>.</summary>
    public async Task<MigrationInfo> QueryMigrateAsync(CancellationToken ct = default) =>
        MigrationInfo.FromJson(await ExecuteAsync("query-migrate", null, null, ct).ConfigureAwait(false));

    /// <summary><c>query-migrate-capabilities</c> as capability name to state.</summary>
    public async Task<IReadOnlyDictionary<string, bool>> QueryMigrateCapabilitiesAsync(CancellationToken ct = default)
    {
        JsonElement list = await ExecuteAsync("query-migrate-capabilities", null, null, ct).ConfigureAwait(false);
        var result = new Dictionary<string, bool>(StringComparer.Ordinal);
        if (list.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement item in list.EnumerateArray())
            {
                string? name = QmpJson.GetString(item, "capability");
                if (name is not null)
                {
                    result[name] = QmpJson.GetBoolean(item, "state") ?? false;
                }
            }
        }

        return result;
    }

    /// <summary><c>query-migrate-parameters</c> as QEMU sent it.</summary>
    public Task<JsonElement> QueryMigrateParametersAsync(CancellationToken ct = default) =>
        ExecuteAsync("query-migrate-parameters", null, null, ct);

    /// <summary><c>migrate-set-capabilities</c>, e.g. <c>{ ["xbzrle"] = true, ["events"] = true }</c>.</summary>
    public Task MigrateSetCapabilitiesAsync(IReadOnlyDictionary<string, bool> capabilities, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(capabilities);
        var list = capabilities.Select(kv => new Dictionary<string, object?> { ["capability"] = kv.Key, ["state"] = kv.Value }).ToList();
        return ExecuteAsync("migrate-set-capabilities", new Dictionary<string, object?> { ["capabilities"] = list }, null, ct);
    }

    /// <summary>
    /// <c>migrate-set-parameters</c>, e.g. <c>downtime-limit</c> (ms), <c>max-bandwidth</c> (bytes/s),
    /// <c>xbzrle-cache-size</c> (bytes).
    /// </summary>
    public Task MigrateSetParametersAsync(IReadOnlyDictionary<string, object> parameters, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return ExecuteAsync("migrate-set-parameters", parameters, null, ct);
    }

    /// <summary><c>migrate</c> to <paramref name="uri"/> (e.g. <c>tcp:host:port</c>, <c>unix:path</c>, <c>exec:cmd</c>). Returns once QEMU started it.</summary>
    public Task MigrateAsync(string uri, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(uri);
        return ExecuteAsync("migrate", new Dictionary<string, object?> { ["uri"] = uri }, null, ct);
    }

    /// <summary><c>migrate-incoming</c> on a VM started with <c>-incoming defer</c>.</summary>
    public Task MigrateIncomingAsync(string uri, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(uri);
        return ExecuteAsync("migrate-incoming", new Dictionary<string, object?> { ["uri"] = uri }, null, ct);
    }

    /// <summary><c>migrate_cancel</c>. Afterwards <c>query-migrate</c> reports only the status.</summary>
    public Task MigrateCancelAsync(CancellationToken ct = default) => ExecuteAsync("migrate_cancel", null, null, ct);

    /// <summary><c>stop</c>: pause the vCPUs (QEMU emits <c>STOP</c>).</summary>
    public Task StopAsync(CancellationToken ct = default) => ExecuteAsync("stop", null, null, ct);

    /// <summary><c>cont</c>: resume the vCPUs (QEMU emits <c>RESUME</c>, before the reply).</summary>
    public Task ContAsync(CancellationToken ct = default) => ExecuteAsync("cont", null, null, ct);

    /// <summary><c>pmemsave</c>: write guest-physical memory [address, address+size) to a file on QEMU's host.</summary>
    public Task PmemSaveAsync(long address, long size, string filename, TimeSpan? timeout = null, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(address);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentException.ThrowIfNullOrEmpty(filename);
        var args = new Dictionary<string, object?> { ["val"] = address, ["size"] = size, ["filename"] = filename };
        return ExecuteAsync("pmemsave", args, timeout, ct);
    }

    /// <summary><c>system_powerdown</c>: ACPI power button.</summary>
    public Task SystemPowerdownAsync(CancellationToken ct = default) => ExecuteAsync("system_powerdown", null, null, ct);

    /// <summary>
    /// <c>quit</c>: QEMU replies and exits. Succeeds also when the connection closes instead of a reply.
    /// Await <see cref="Closed"/> to know the monitor is gone.
    /// </summary>
    public Task QuitAsync(CancellationToken ct = default) => ExecuteAsync("quit", null, null, ct);

    /// <summary>Closes the connection; pending commands fail with <see cref="QmpConnectionClosedException"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        OnClosed(new ObjectDisposedException(nameof(QmpClient), "The QMP client was disposed."));
        _readerCts.Cancel();
        try
        {
            await _readerTask.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogDebug(ex, "QMP {Endpoint}: reader ended with an exception during dispose", Endpoint);
        }

        _readerCts.Dispose();
    }

    private static async Task ConnectSocketAsync(Socket socket, EndPoint endPoint, string endpoint, TimeSpan timeout, CancellationToken ct)
    {
        using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeoutCts.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(endPoint, timeoutCts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"Could not connect to QMP at {endpoint} within {timeout.TotalSeconds:0.###} s.");
        }
        catch (SocketException ex)
        {
            throw new QmpException($"Could not connect to QMP at {endpoint}: {ex.Message}", ex);
        }
    }

    private static TimeSpan Remaining(TimeSpan timeout, DateTime started)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            return timeout;
        }

        TimeSpan left = timeout - (DateTime.UtcNow - started);
        return left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1);
    }

    private static byte[] Serialize(string command, object? arguments, long id)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("execute", command);
            if (arguments is not null && !(arguments is JsonElement { ValueKind: JsonValueKind.Undefined or JsonValueKind.Null }))
            {
                writer.WritePropertyName("arguments");
                JsonSerializer.Serialize(writer, arguments, arguments.GetType());
            }

            writer.WriteNumber("id", id);
            writer.WriteEndObject();
        }

        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    private static string Trim(string text) =>
        text.Length <= MaxLoggedChars ? text : string.Concat(text.AsSpan(0, MaxLoggedChars), $"... ({text.Length} chars)");

    private async Task SendAsync(byte[] message, string command, CancellationToken ct)
    {
        await _writeLock.WaitAsync(ct).ConfigureAwait(false);

        // The write itself is never cancelled: a half-written command would corrupt the stream. A caller
        // that gives up waiting leaves it to finish in the background; the lock is released when it does.
        Task<Exception?> write = WriteAndReleaseAsync(message);
        Exception? error = await write.WaitAsync(ct).ConfigureAwait(false);
        if (error is not null)
        {
            throw new QmpConnectionClosedException(Endpoint, command, wasPending: false, error);
        }
    }

    private async Task<Exception?> WriteAndReleaseAsync(byte[] message)
    {
        try
        {
            await _stream.WriteAsync(message).ConfigureAwait(false);
            await _stream.FlushAsync().ConfigureAwait(false);
            return null;
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
            _logger.LogDebug(ex, "QMP {Endpoint}: write failed", Endpoint);
            OnClosed(ex);
            return ex;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void StartReader() => _readerTask = Task.Run(ReadLoopAsync);

    private async Task ReadLoopAsync()
    {
        Exception? reason = null;
        try
        {
            while (true)
            {
                ReadOnlyMemory<byte>? line = await _lineReader.ReadLineAsync(_readerCts.Token).ConfigureAwait(false);
                if (line is null)
                {
                    _logger.LogDebug("QMP {Endpoint}: end of stream", Endpoint);
                    break;
                }

                HandleLine(line.Value);
            }
        }
        catch (OperationCanceledException) when (_readerCts.IsCancellationRequested)
        {
            // Disposed.
        }
        catch (Exception ex)
        {
            reason = ex;
            lock (_gate)
            {
                if (_isClosed)
                {
                    reason = null; // Read failed because the stream was closed on purpose.
                }
            }

            if (reason is not null)
            {
                _logger.LogDebug(ex, "QMP {Endpoint}: read failed", Endpoint);
            }
        }
        finally
        {
            OnClosed(reason);
        }
    }

    private void HandleLine(ReadOnlyMemory<byte> line)
    {
        if (line.Span.Trim(" \t\r"u8).IsEmpty)
        {
            return;
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(line);
        }
        catch (JsonException ex)
        {
            _logger.LogWarning(ex, "QMP {Endpoint}: ignoring a line that is not JSON: {Line}", Endpoint, Trim(Encoding.UTF8.GetString(line.Span)));
            return;
        }

        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                _logger.LogWarning("QMP {Endpoint}: ignoring a message that is not an object: {Line}", Endpoint, Trim(root.GetRawText()));
                return;
            }

            if (root.TryGetProperty("event", out JsonElement eventName) && eventName.ValueKind == JsonValueKind.String)
            {
                HandleEvent(root, eventName.GetString()!);
            }
            else if (root.TryGetProperty("return", out _) || root.TryGetProperty("error", out _))
            {
                HandleReply(root);
            }
            else if (root.TryGetProperty("QMP", out JsonElement qmp))
            {
                _greeting.TrySetResult(QmpGreeting.FromJson(qmp));
            }
            else
            {
                _logger.LogWarning("QMP {Endpoint}: ignoring an unknown message: {Line}", Endpoint, Trim(root.GetRawText()));
            }
        }
    }

    private void HandleReply(JsonElement root)
    {
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            _logger.LogDebug("QMP {Endpoint} <- {Message}", Endpoint, Trim(root.GetRawText()));
        }

        long id = -1;
        if (!root.TryGetProperty("id", out JsonElement idElement) || !idElement.TryGetInt64(out id))
        {
            // QEMU omits the id only when it could not parse the command; the client never sends such commands.
            _logger.LogWarning("QMP {Endpoint}: reply without a usable id: {Message}", Endpoint, Trim(root.GetRawText()));
            return;
        }

        PendingCommand? pending;
        lock (_gate)
        {
            _pending.Remove(id, out pending);
        }

        if (pending is null)
        {
            _logger.LogDebug("QMP {Endpoint}: reply to id {Id} which no one waits for any more (timed out or cancelled)", Endpoint, id);
            return;
        }

        if (root.TryGetProperty("error", out JsonElement error))
        {
            string errorClass = QmpJson.GetString(error, "class") ?? "UnknownError";
            string description = QmpJson.GetString(error, "desc") ?? error.GetRawText();
            pending.Completion.TrySetException(new QmpCommandException(pending.Command, errorClass, description));
        }
        else
        {
            pending.Completion.TrySetResult(root.GetProperty("return").Clone());
        }
    }

    private void HandleEvent(JsonElement root, string name)
    {
        JsonElement data = root.TryGetProperty("data", out JsonElement d) ? d.Clone() : QmpJson.EmptyObject;
        DateTimeOffset timestamp = DateTimeOffset.UtcNow;
        if (root.TryGetProperty("timestamp", out JsonElement ts))
        {
            long seconds = QmpJson.GetInt64(ts, "seconds") ?? 0;
            long micros = QmpJson.GetInt64(ts, "microseconds") ?? 0;
            if (seconds > 0)
            {
                timestamp = DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(micros * 10);
            }
        }

        var evt = new QmpEvent(name, data, timestamp);
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            _logger.LogDebug("QMP {Endpoint} event {Event} {Data}", Endpoint, name, Trim(data.GetRawText()));
        }

        _events.Writer.TryWrite(evt);

        List<EventWaiter>? matched = null;
        lock (_gate)
        {
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                EventWaiter waiter = _waiters[i];
                bool isMatch;
                try
                {
                    isMatch = waiter.Match(evt);
                }
                catch (Exception ex)
                {
                    _waiters.RemoveAt(i);
                    waiter.Fail(ex);
                    continue;
                }

                if (isMatch)
                {
                    _waiters.RemoveAt(i);
                    (matched ??= []).Add(waiter);
                }
            }
        }

        if (matched is not null)
        {
            foreach (EventWaiter waiter in matched)
            {
                waiter.Succeed(evt);
            }
        }

        EventHandler<QmpEvent>? handler = EventReceived;
        if (handler is not null)
        {
            foreach (EventHandler<QmpEvent> single in handler.GetInvocationList().Cast<EventHandler<QmpEvent>>())
            {
                try
                {
                    single(this, evt);
                }
                catch (Exception ex)
                {
                    _logger.LogWarning(ex, "QMP {Endpoint}: an EventReceived handler threw on {Event}", Endpoint, name);
                }
            }
        }
    }

    private void OnClosed(Exception? reason)
    {
        List<PendingCommand> pending;
        List<EventWaiter> waiters;
        lock (_gate)
        {
            if (_isClosed)
            {
                return;
            }

            _isClosed = true;
            _closeReason = reason;
            pending = [.. _pending.Values];
            _pending.Clear();
            waiters = [.. _waiters];
            _waiters.Clear();
        }

        if (reason is null or ObjectDisposedException)
        {
            _logger.LogDebug("QMP {Endpoint}: connection closed", Endpoint);
        }
        else
        {
            _logger.LogDebug(reason, "QMP {Endpoint}: connection closed", Endpoint);
        }

        try
        {
            _stream.Dispose();
        }
        catch (Exception ex)
        {
            _logger.LogDebug(ex, "QMP {Endpoint}: error while closing the stream", Endpoint);
        }

        _greeting.TrySetException(new QmpConnectionClosedException(Endpoint, null, wasPending: true, reason));
        _ = _greeting.Task.Exception; // Observed: nobody may be waiting for a greeting.

        foreach (PendingCommand command in pending)
        {
            if (command.Command == "quit" && reason is not ObjectDisposedException)
            {
                // QEMU closes the monitor as it exits; a close instead of the reply means the quit worked.
                command.Completion.TrySetResult(QmpJson.EmptyObject);
            }
            else
            {
                command.Completion.TrySetException(new QmpConnectionClosedException(Endpoint, command.Command, wasPending: true, reason));
            }
        }

        foreach (EventWaiter waiter in waiters)
        {
            waiter.Fail(new QmpConnectionClosedException(Endpoint, null, wasPending: true, reason));
        }

        _events.Writer.TryComplete();
        _closed.TrySetResult();
    }

    private sealed class PendingCommand(string command)
    {
        public string Command { get; } = command;

        public TaskCompletionSource<JsonElement> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class EventWaiter(Func<QmpEvent, bool> match)
    {
        public Func<QmpEvent, bool> Match { get; } = match;

        public TaskCompletionSource<QmpEvent> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CancellationTokenRegistration Registration { get; set; }

        public void Succeed(QmpEvent evt)
        {
            Completion.TrySetResult(evt);
            Registration.Dispose();
        }

        public void Fail(Exception ex)
        {
            Completion.TrySetException(ex);
            Registration.Dispose();
        }
    }

}
