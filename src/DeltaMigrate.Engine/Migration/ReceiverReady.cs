namespace DeltaMigrate.Engine.Migration;

/// <summary>What a sender needs: where to connect, and the one-time token.</summary>
public sealed record ReceiverReady(string VMName, string Endpoint, string Token);
