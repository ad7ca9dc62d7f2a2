using System.Net;

namespace DeltaMigrate.Engine.Migration;

/// <summary>
/// Where the two ends of a one-host migration meet: the destination (QEMU's listener, or our tunnel
/// receiver) listens on <see cref="Listen"/> and the source connects to <see cref="Connect"/>.
/// Loopback for everyone; the benchmark sets $DELTAMIGRATE_LOCAL_LINK to route the migration
/// through its delay line, where the two addresses differ (tests/bench/delayline).
/// </summary>
public sealed record LocalLink(IPAddress Listen, IPAddress Connect)
{
    /// <summary>"LISTEN,CONNECT", e.g. "10.9.0.1,10.9.0.2".</summary>
    public const string EnvironmentVariable = "DELTAMIGRATE_LOCAL_LINK";

    public static LocalLink Loopback { get; } = new(IPAddress.Loopback, IPAddress.Loopback);

    /// <summary>$DELTAMIGRATE_LOCAL_LINK if set, else loopback.</summary>
    public static LocalLink FromEnvironment()
    {
        var value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        return string.IsNullOrWhiteSpace(value) ? Loopback : Parse(value);
    }

    public static LocalLink Parse(string value)
    {
        var parts = value.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length == 2 && IPAddress.TryParse(parts[0], out var listen) && IPAddress.TryParse(parts[1], out var connect))
        {
            return new LocalLink(listen, connect);
        }

        throw new EngineException("InvalidLocalLink", ErrorKind.InvalidArgument,
            $"${EnvironmentVariable} is '{value}'; it must be two IP addresses 'LISTEN,CONNECT' (e.g. '10.9.0.1,10.9.0.2'), or unset for loopback.");
    }

    /// <summary>An address as a QEMU URI wants it (IPv6 in brackets).</summary>
    internal static string UriHost(IPAddress address) => RemoteTarget.FormatUriHost(address.ToString());
}
