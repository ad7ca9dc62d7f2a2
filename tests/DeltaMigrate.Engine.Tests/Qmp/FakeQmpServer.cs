using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using DeltaMigrate.Engine.Qmp;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Tests.Qmp;

/// <summary>
/// A scripted QMP server: the test drives every message by hand (greeting, replies, events, close).
/// </summary>
internal sealed class FakeQmpServer : IAsyncDisposable
{
    public const string Greeting =
        """{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}""";

    /// <summary>Bound on every single step of a scripted exchange, so a broken client fails instead of hanging.</summary>
    public static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _listener;
    private readonly string? _directory;

    private FakeQmpServer(Socket listener, string? directory, string? socketPath, int port)
    {
        _listener = listener;
        _directory = directory;
        SocketPath = socketPath;
        Port = port;
    }

    public string? SocketPath { get; }

    public int Port { get; }

    public static FakeQmpServer StartUnix()
    {
        string dir = Directory.CreateTempSubdirectory("dm-fakeqmp-").FullName;
        string path = Path.Combine(dir, "qmp.sock");
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(4);
        return new FakeQmpServer(listener, dir, path, 0);
    }

    public static FakeQmpServer StartTcp()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4);
        return new FakeQmpServer(listener, null, null, ((IPEndPoint)listener.LocalEndPoint!).Port);
    }

    public async Task<FakeQmpPeer> AcceptAsync()
    {
        Socket socket = await _listener.AcceptAsync().WaitAsync(StepTimeout);
        return new FakeQmpPeer(socket);
    }

    /// <summary>Connects a client over the unix socket and plays the handshake (greeting, qmp_capabilities).</summary>
    public async Task<(QmpClient Client, FakeQmpPeer Peer)> ConnectAsync(ILogger? logger = null)
    {
        Task<QmpClient> connect = QmpClient.ConnectUnixAsync(SocketPath!, logger, StepTimeout);
        FakeQmpPeer peer = await AcceptAsync();
        await peer.SendAsync(Greeting);
        FakeCommand caps = await peer.ReadCommandAsync();
        Assert.Equal("qmp_capabilities", caps.Execute);
        await peer.ReplyAsync(caps);
        QmpClient client = await connect.WaitAsync(StepTimeout);
        return (client, peer);
    }

    public ValueTask DisposeAsync()
    {
        _listener.Dispose();
        if (_directory is not null)
        {
            try
            {
                Directory.Delete(_directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>A command as the fake server received it.</summary>
internal sealed record FakeCommand(string Execute, JsonElement Id, JsonElement? Arguments, string RawLine)
{
    public string? ArgumentsJson => Arguments?.GetRawText();
}

/// <summary>The server side of one accepted connection.</summary>
internal sealed class FakeQmpPeer : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;

    public FakeQmpPeer(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(_stream, new UTF8Encoding(false));
    }

    public async Task SendAsync(string json)
    {
        // QEMU terminates every message with CRLF.
        byte[] bytes = Encoding.UTF8.GetBytes(json + "\r\n");
        await _stream.WriteAsync(bytes).AsTask().WaitAsync(FakeQmpServer.StepTimeout);
    }

    public async Task<FakeCommand> ReadCommandAsync()
    {
        string? line = await _reader.ReadLineAsync().WaitAsync(FakeQmpServer.StepTimeout);
        Assert.NotNull(line);
        using var doc = JsonDocument.Parse(line);
        JsonElement root = doc.RootElement;
        return new FakeCommand(
            root.GetProperty("execute").GetString()!,
            root.GetProperty("id").Clone(),
            root.TryGetProperty("arguments", out JsonElement args) ? args.Clone() : null,
            line);
    }

    /// <summary>Reads until the client closes its side; true when it did.</summary>
    public async Task<bool> ReadEndAsync()
    {
        string? line = await _reader.ReadLineAsync().WaitAsync(FakeQmpServer.StepTimeout);
        return line is null;
    }

    public Task ReplyAsync(FakeCommand command, string returnJson = "{}") =>
        SendAsync($$"""{"return": {{returnJson}}, "id": {{command.Id.GetRawText()}}}""");

    public Task ReplyErrorAsync(FakeCommand command, string errorClass, string description) =>
        SendAsync($$$"""{"id": {{{command.Id.GetRawText()}}}, "error": {"class": {{{JsonSerializer.Serialize(errorClass)}}}, "desc": {{{JsonSerializer.Serialize(description)}}}}}""");

    public Task SendEventAsync(string name, string? dataJson = null, long seconds = 1700000000, long microseconds = 123456) =>
        SendAsync(dataJson is null
            ? $$"""{"timestamp": {"seconds": {{seconds}}, "microseconds": {{microseconds}}}, "event": "{{name}}"}"""
            : $$"""{"timestamp": {"seconds": {{seconds}}, "microseconds": {{microseconds}}}, "event": "{{name}}", "data": {{dataJson}}}""");

    /// <summary>Closes the connection the way a dying QEMU does.</summary>
    public void Close()
    {
        _socket.Shutdown(SocketShutdown.Both);
        _reader.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        return ValueTask.CompletedTask;
    }
}
