using System.Text.Json;
using System.Text.Json.Serialization;

namespace DeltaMigrate.Engine.Migration.Commit;

/// <summary>The control frames' JSON. Only an authenticated peer can send them; they are still parsed defensively.</summary>
internal static class CommitJson
{
    private static readonly JsonSerializerOptions Options = new()
    {
        Converters = { new JsonStringEnumConverter() },
        MaxDepth = 8,
    };

    /// <summary>A refusal in Prepare, as "[ErrorId] message", so the sender reports the receiver's own error id.</summary>
    public static string Refusal(EngineException e) => $"[{e.ErrorId}] {e.Message}";

    /// <summary>The receiver's error id and message from a refusal, or null when it carries none.</summary>
    public static (string Id, string Message)? ParseRefusal(string text)
    {
        var close = text.IndexOf("] ", StringComparison.Ordinal);
        return text.StartsWith('[') && close is > 1 and < 64 && text[1..close].All(char.IsAsciiLetterOrDigit)
            ? (text[1..close], text[(close + 2)..])
            : null;
    }

    public static byte[] Write<T>(T message) => JsonSerializer.SerializeToUtf8Bytes(message, Options);

    public static T Read<T>(byte[] payload, string what)
        where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(payload, Options)
                ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new EngineException("TunnelProtocolError", ErrorKind.ProtocolError,
                $"The other side's {what} message is malformed ({e.Message}). Use the same DeltaMigrate version on both hosts.", e);
        }
    }
}
