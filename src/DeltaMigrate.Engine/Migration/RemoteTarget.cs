namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// Receive-KvmVM on another host: the endpoint it printed (the token comes with the options). Every
/// mode goes through it, None and Native too, since only it can check, commit or remove the destination.
/// </summary>
public sealed record RemoteTarget(string Host, int Port) : MigrationTarget
{
    public override string Display => $"{Host}:{Port}";

    /// <summary>The host as a QEMU URI wants it (IPv6 in brackets).</summary>
    public string UriHost => FormatUriHost(Host);

    /// <summary>A host or address as a QEMU URI wants it: IPv6 in brackets.</summary>
    public static string FormatUriHost(string host) => host.Contains(':') ? $"[{host}]" : host;

    /// <summary>Parses "host:port" or "[v6addr]:port".</summary>
    public static RemoteTarget Parse(string endpoint)
    {
        var colon = endpoint.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(endpoint.AsSpan(colon + 1), out var port) || port is < 1 or > 65535)
        {
            throw new EngineException("InvalidDestination", ErrorKind.InvalidArgument,
                $"-Destination '{endpoint}' is neither a VM on this host nor host:port of a QEMU waiting for a migration.")
            { Target = endpoint };
        }

        return new RemoteTarget(endpoint[..colon].Trim('[', ']'), port);
    }
}
