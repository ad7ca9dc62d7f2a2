using System.Net.Sockets;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// Makes a dead peer visible at the TCP level too: keepalive probes on an idle connection, and
/// TCP_USER_TIMEOUT so data the peer never acknowledges (a host that lost power) fails the socket
/// instead of retransmitting for the kernel's default of about 15 minutes.
/// </summary>
internal static class TcpLiveness
{
    private const int IpProtoTcp = 6;
    private const int TcpUserTimeout = 18;

    public static void Apply(Socket socket, TimeSpan timeout)
    {
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        var seconds = Math.Max(1, (int)(timeout.TotalSeconds / 3));
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, seconds);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, seconds);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
        if (OperatingSystem.IsLinux())
        {
            socket.SetRawSocketOption(IpProtoTcp, TcpUserTimeout, BitConverter.GetBytes((int)timeout.TotalMilliseconds));
        }
    }
}
