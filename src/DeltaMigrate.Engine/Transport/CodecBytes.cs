namespace DeltaMigrate.Engine.Transport;

/// <summary>What one codec carried: Data frames, the stream bytes they hold, and their bytes on the wire (header and tag included).</summary>
public sealed record CodecBytes(string Codec, long Frames, long StreamBytes, long WireBytes);
