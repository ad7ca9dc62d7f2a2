using System.Net;
using System.Net.Sockets;
using DeltaMigrate.Engine.Transport;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Delta;

/// <summary>
/// The receiving end: listens for the authenticated tunnel and feeds what arrives, unchanged,
/// into the destination QEMU's incoming unix socket. It keeps no pages: QEMU decodes the XBZRLE
/// records against the memory it already holds.
/// </summary>
public sealed class DeltaReceiver : IAsyncDisposable
{
    private readonly TunnelListener _listener;
    private readonly string _destinationSocket;

    private DeltaReceiver(TunnelListener listener, MigrationToken token, string destinationSocket)
    {
        _listener = listener;
        Token = token;
        _destinationSocket = destinationSocket;
    }

    public IPEndPoint Endpoint => _listener.LocalEndpoint;

    public MigrationToken Token { get; }

    /// <summary>Listens at once; <paramref name="destinationSocket"/> is where the destination QEMU waits (migrate-incoming unix:PATH).</summary>
    public static DeltaReceiver Start(IPEndPoint listen, MigrationToken token, string destinationSocket, ILogger? logger = null) =>
        new(TunnelListener.Start(listen, token, logger), token, destinationSocket);

    /// <summary>Receives one migration; the destination socket is opened only for an authenticated sender.</summary>
    public Task<TunnelStats> ReceiveAsync(CancellationToken cancellationToken) =>
        _listener.ReceiveAsync(async ct =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(_destinationSocket), ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }, cancellationToken);

    public ValueTask DisposeAsync() => _listener.DisposeAsync();
}
